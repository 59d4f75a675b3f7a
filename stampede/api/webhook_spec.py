"""The OpenAPI 3.1 `webhooks` of the admin document: what an endpoint receives.

One entry per event type an endpoint can subscribe to, its body schema taken
from the very structs the delivery worker encodes (stampede.durable.
webhook_payloads), an example each, and the Standard Webhooks headers.
"""

from typing import Any

import msgspec

from stampede.durable import webhook_payloads
from stampede.durable.webhooks import EVENT_TYPES

SIGNATURE_HEADERS = {
    "webhook-id": "the message's stable id, `<campaign>.<seq>`: the same on every retry "
                  "and replay, so a receiver drops duplicates by it",
    "webhook-timestamp": "seconds since the epoch, of this attempt (reject old ones)",
    "webhook-signature": "`v1,<base64 HMAC-SHA256 of \"id.timestamp.body\">` keyed by the "
                         "base64 part of the endpoint's `whsec_` secret; two, space-separated, "
                         "while a rotated-out secret still signs",
}

_DESCRIPTION = ("Sent by the delivery worker to every endpoint subscribed to this event type "
                "(or to `*`), in order per campaign, at least once. Verify the signature with "
                "any Standard Webhooks library; answer 2xx to acknowledge: anything else (or "
                "no answer within the timeout) is retried with backoff. `version` is the "
                "payload version; it only changes if a field changes meaning or goes away.")


def webhooks_spec() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the `webhooks` object, the component schemas it refers to)."""
    types = sorted(EVENT_TYPES)
    structs = [webhook_payloads.PAYLOADS[name] for name in types]
    schemas, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}")
    headers = [{"name": name, "in": "header", "required": True, "schema": {"type": "string"},
                "description": text} for name, text in SIGNATURE_HEADERS.items()]
    hooks = {name: {"post": {
        "summary": f"`{name}` event",
        "description": _DESCRIPTION,
        "operationId": f"webhook_{name}",
        "tags": ["webhook payloads"],
        "parameters": headers,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": schema, "example": webhook_payloads.example(name)}}},
        "responses": {"2XX": {"description": "received: the cursor moves past this event"},
                      "default": {"description": "not received: retried with backoff"}},
    }} for name, schema in zip(types, schemas, strict=True)}
    return hooks, components
