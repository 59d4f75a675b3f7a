"""Examples for the OpenAPI document, built from the schemas themselves.

Client generators and the docs page show an example for every request and
response. Writing them by hand would drift from the types, so each one is
synthesised from its JSON Schema: a known sample for the names the API uses
everywhere (campaign ids, SKUs, timestamps), else the smallest value the
schema allows. tests/api/test_openapi_examples.py validates every example
against its schema, so an example that the API would refuse fails the build.
"""

import re
from typing import Any

from stampede.outcomes import REFUSALS

AT = "2026-06-01T10:00:00Z"
"""Every timestamp in the examples: RFC 3339 with an offset, as the API writes them."""

_BY_NAME: dict[str, Any] = {
    "cid": "spring-drop", "campaign": "spring-drop", "campaign_id": "spring-drop",
    "sku": "tee-black", "claim_id": "spring-drop.0123456789abcdef0123",
    "user": "alice", "user_id": "alice", "name": "Spring drop", "currency": "EUR",
    "drop": "welcome", "drop_id": "welcome", "code": "WELCOME-7QK2",
    "token": "adm.eyJ0IjoxfQ.c2ln", "admission_token": "adm.eyJ0IjoxfQ.c2ln",
    "url": "https://shop.example/hooks/stampede", "status": "ok",
}

_FALLBACKS = ("example", "abc", "a", "0123456789abcdef", "ABC123", "1",
              "spring-drop.0123456789abcdef0123", "welcome.0123456789abcdef0123456789abcdef")


def example(schema: dict[str, Any], components: dict[str, Any], name: str = "",
            depth: int = 0) -> Any:
    """A value that `schema` accepts ($refs resolved in `components`)."""
    if depth > 8:
        return None
    if "examples" in schema:  # (before a $ref: a use of a type may give its own)
        return schema["examples"][0]
    if "$ref" in schema:
        target = components[schema["$ref"].rsplit("/", 1)[1]]
        return example(target, components, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for union in ("anyOf", "oneOf"):
        if union in schema:  # the first branch that is not null
            branches = [b for b in schema[union] if b.get("type") != "null"] or schema[union]
            return example(branches[0], components, name, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object(schema, components, depth)
    if kind == "array":
        item = example(schema.get("items", {}), components, name, depth + 1)
        return [item] * max(1, schema.get("minItems", 1))
    if kind == "integer":
        return _number(schema, 1)
    if kind == "number":
        return _number(schema, 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _object(schema: dict[str, Any], components: dict[str, Any], depth: int) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    props = schema.get("properties", {})
    out = {key: example(sub, components, key, depth + 1) for key, sub in props.items()
           if key in required or depth == 0 or "default" not in sub}
    if not props and isinstance(schema.get("additionalProperties"), dict):
        out["key"] = example(schema["additionalProperties"], components, "key", depth + 1)
    return out


def _number(schema: dict[str, Any], fallback: float) -> Any:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if low is None:
        return fallback if schema.get("maximum", fallback) >= fallback else schema["maximum"]
    return low + (1 if "exclusiveMinimum" in schema else 0)


def _string(schema: dict[str, Any], name: str) -> str:
    if schema.get("format") == "date-time" or name.endswith(("_at", "_until")):
        return AT
    named = _BY_NAME.get(name)
    low: int = schema.get("minLength", 0)
    high: int = schema.get("maxLength", 1 << 20)
    candidates: list[str] = ([named] if isinstance(named, str) else []) + list(_FALLBACKS)
    for candidate in candidates:
        value = (candidate + "x" * low)[:max(low, min(len(candidate), high))]
        if "pattern" not in schema or re.search(schema["pattern"], value):
            return value
    return "x" * max(1, low)


def error_example(status: int, codes: list[str]) -> dict[str, Any]:
    """The error body of the first refusal of `codes` (else of any code) with this status."""
    found = sorted((r for r in REFUSALS.values() if r.status == status),
                   key=lambda r: (r.code not in codes[:1], r.code))
    if not found:
        return {"error": {"code": "error", "message": "the request was refused"}}
    first = found[0]
    return {"error": {"code": first.code, "message": first.message({})}}
