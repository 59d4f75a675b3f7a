"""The OpenAPI 3.1 spec, generated from the route declarations and msgspec types."""

from typing import Any

import msgspec
import msgspec.inspect as mi

from stampede.api import route_errors
from stampede.api.examples import error_example, example
from stampede.api.idempotency import KEY_PATTERN
from stampede.api.routing import Operation
from stampede.outcomes import REFUSALS

ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "opens_at": {"type": "string", "format": "date-time",
                         "description": "not_open: when the campaign opens"},
            # Scalper-guard refusals (throttled, blocked, challenge_required):
            "reason": {"type": "string", "description": "the limit, list or rule that refused"},
            "retry_after_ms": {"type": "integer", "description": "throttled: exact wait"},
            "challenge": {
                "type": "object", "required": ["token", "difficulty", "expires_at"],
                "description": "challenge_required: find a decimal counter such that "
                               "sha256(token + ':' + counter) has `difficulty` leading zero "
                               "bits; send X-Challenge-Token and X-Challenge-Solution",
                "properties": {"token": {"type": "string"}, "difficulty": {"type": "integer"},
                               "expires_at": {"type": "string", "format": "date-time"},
                               "algorithm": {"type": "string"}}}}}},
}

def _error_text(op: Operation, status: int) -> str:
    """The codes this route can answer with `status` (docs/errors.md has them all)."""
    text = ", ".join(route_errors.codes(op.handler.__name__, status, op.auth)) or "error"
    if status == 401:
        text += " (WWW-Authenticate: Bearer)"
    if status == 405:
        text += " (Allow)"
    if any(r.retry_after for r in REFUSALS.values() if r.status == status):
        text += "; Retry-After where waiting helps"
    return text + "; see docs/errors.md"


DEV_AUTH_HEADERS = {
    "X-User-Id": "the caller's user id (STAMPEDE_DEV_AUTH=1 only; else a bearer JWT's `sub`)",
    "X-Account-Created": "when the account was made, epoch seconds (the JWT's `created_at` "
                         "in dev auth): the scalper guard's `account_age_s` risk signal",
    "X-Identity-Hash": "the caller's hashed real-person identity (the JWT's `idh` in dev "
                       "auth): the `per_person` limit of a campaign or coupon drop counts it",
    "X-User-Tiers": "the caller's audience tiers, comma-separated (the JWT's `tiers` in dev "
                    "auth): a campaign's presale access phases admit by them",
    "X-Channel": "the caller's sales channel (the JWT's `channel` in dev auth): a SKU's "
                 "allocations for that channel serve it",
}
"""Headers that stand in for a user token's claims when STAMPEDE_DEV_AUTH=1."""

_USER_TOKEN = ("HS256 JWT: `sub` the user id; optional `exp`, `created_at` (account creation, "
               "epoch s: the `account_age_s` risk signal) and `idh` (hashed real-person "
               "identity: the `per_person` limits) and `tiers` (a list of audience tiers: "
               "presale access phases) and `channel` (the sales channel: allocations); "
               "`stampede token` mints one")

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "user": [{"userToken": []}, {"devUser": []}], "viewer": [{"adminToken": []}],
    "operator": [{"adminToken": []}], "merchant": [{"merchantToken": []}],
    "scanner": [{"scannerToken": []}]}


REQUEST_ID = {"description": "this request's id (the caller's own X-Request-Id if it sent a "
                             "sane one): quote it when reporting a problem",
              "schema": {"type": "string"}}
RETRY_AFTER = {"description": "seconds to wait before trying again", "schema": {
    "type": "integer", "minimum": 1}}


def build_spec(title: str, operations: list[Operation], dev_auth: bool,
               webhooks: tuple[dict[str, Any], dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    """The document; `webhooks` (the object and its component schemas) when this
    listener documents the webhook payloads too."""
    types = {t for op in operations for t in (op.body, op.response) if t is not None}
    ordered = sorted(types, key=repr)
    schemas, components = msgspec.json.schema_components(
        ordered, ref_template="#/components/schemas/{name}")
    mark_date_times(ordered, components)
    refs = dict(zip(ordered, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs, components,
                                                                      dev_auth)
    security_schemes: dict[str, Any] = {
        "userToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256, sub)",
                      "description": _USER_TOKEN},
        "adminToken": {"type": "http", "scheme": "bearer"},
        "merchantToken": {"type": "http", "scheme": "bearer"},
        "scannerToken": {"type": "http", "scheme": "bearer"},
    }
    if dev_auth:
        security_schemes["devUser"] = {"type": "apiKey", "in": "header", "name": "X-User-Id",
                                       "description": "STAMPEDE_DEV_AUTH=1 only; with "
                                       "X-Account-Created, X-Identity-Hash and X-User-Tiers "
                                       "standing in for the token's created_at, idh and "
                                       "tiers"}
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "servers": [{"url": "/", "description": "this service (the page's own origin)"}],
        "paths": paths,
        "components": {"schemas": {**components, "Error": ERROR_SCHEMA},
                       "headers": {"X-Request-Id": REQUEST_ID, "Retry-After": RETRY_AFTER},
                       "securitySchemes": security_schemes},
    }
    if webhooks is not None:
        hooks, hook_schemas = webhooks
        clash = set(hook_schemas) & set(spec["components"]["schemas"])
        assert not clash, f"webhook payload schemas named like API schemas: {clash}"
        spec["webhooks"] = hooks
        spec["components"]["schemas"].update(hook_schemas)
    return spec


def enforced_errors(op: Operation) -> set[int]:
    """The answers the router itself gives before the handler runs (see routing), and
    those of reading a body (errors.read_body)."""
    errors = {400} if op.idempotent or op.query_params or op.path_params else set()
    if op.auth != "none":
        errors.add(401)
    if op.auth == "operator":
        errors.add(403)
    if op.body is not None:  # read_body: a body over the listener's limit, or too slow
        errors |= {408, 413}
    return errors


def mark_date_times(types: list[Any], components: dict[str, Any]) -> None:
    """`format: date-time` on every property typed datetime (msgspec writes a bare string)."""
    for info in mi.multi_type_info(types):
        _mark(info, components, set())


def _mark(info: mi.Type, components: dict[str, Any], seen: set[str]) -> None:
    if isinstance(info, mi.UnionType):
        for branch in info.types:
            _mark(branch, components, seen)
    elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        _mark(info.item_type, components, seen)
    elif isinstance(info, mi.DictType):
        _mark(info.value_type, components, seen)
    elif isinstance(info, mi.Metadata):
        _mark(info.type, components, seen)
    elif isinstance(info, mi.StructType) and info.cls.__name__ not in seen:
        seen.add(info.cls.__name__)
        schema = components.get(info.cls.__name__, {})
        for f in info.fields:
            if _is_date_time(f.type):
                _set_format(schema.get("properties", {}).get(f.encode_name, {}))
            _mark(f.type, components, seen)


def _is_date_time(info: mi.Type) -> bool:
    if isinstance(info, mi.Metadata):
        return _is_date_time(info.type)
    if isinstance(info, mi.UnionType):
        return any(_is_date_time(t) for t in info.types)
    return isinstance(info, mi.DateTimeType)


def _set_format(prop: dict[str, Any]) -> None:
    if prop.get("type") == "string":
        prop["format"] = "date-time"
    for branch in prop.get("anyOf", ()):
        _set_format(branch)


def _operation(op: Operation, refs: dict[Any, Any], components: dict[str, Any],
               dev_auth: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": op.handler.__name__,
                           "tags": list(op.tags)}
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "string", "pattern": pattern}}
              for name, pattern in op.path_params.items()]
    params += [{"name": name, "in": "query", "required": required,
                "schema": {"type": "string", "pattern": pattern}}
               for name, (pattern, required) in op.query_params.items()]
    params += [{"name": name, "in": "header", "required": False,
                "schema": {"type": "string", "maxLength": 1024}, "description": text}
               for name, text in op.headers.items()]
    if dev_auth and op.auth == "user":
        params += [{"name": name, "in": "header", "required": False,
                    "schema": {"type": "string", "maxLength": 1024}, "description": text}
                   for name, text in DEV_AUTH_HEADERS.items() if name != "X-User-Id"]
    if op.idempotent:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "schema": {"type": "string", "pattern": KEY_PATTERN},
                       "description": "a retry with the same key returns the first answer"})
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": refs[op.body], "example": example(refs[op.body], components)}}}
    request_id = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    ok: dict[str, Any] = {"description": "success", "headers": request_id}
    if op.response is not None:
        sample = example(refs[op.response], components)
        if op.media_type == "text/event-stream":
            sample = f"event: state\ndata: {msgspec.json.encode(sample).decode()}\n\n"
        ok["content"] = {op.media_type: {"schema": refs[op.response], "example": sample}}
        for media in op.exports:  # the whole listing as rows of text, streamed
            ok["content"][media] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(s): ok for s in (op.status, *op.also) if s != 304}
    if 304 in op.also:
        responses["304"] = {"description": "not modified: If-None-Match named the current ETag",
                            "headers": request_id}
    errors = set(op.errors) | enforced_errors(op)
    for status in sorted(errors):
        headers = dict(request_id)
        if status in (429, 503) or any(r.retry_after for r in REFUSALS.values()
                                       if r.status == status):
            headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
        responses[str(status)] = {
            "description": _error_text(op, status), "headers": headers,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                             "example": error_example(status, route_errors.codes(
                                                 op.handler.__name__, status, op.auth))}}}
    out["responses"] = responses
    if op.auth != "none":
        out["security"] = _SECURITY[op.auth] if dev_auth or op.auth != "user" \
            else [{"userToken": []}]
    return out
