"""The body of every webhook message, as typed structs derived from the events.

Each event class of stampede.durable.events gets two structs made from its
fields: `<Event>Data` (the event's own fields, plus `campaign` and `seq`) and
`<Event>Webhook` (the envelope: `type`, `version`, `timestamp`, `data`). The
delivery worker encodes exactly these structs, and the OpenAPI document's
`webhooks` are their JSON Schemas, so the documentation cannot drift from
what is sent. A new event field appears in both at once.

VERSION is the payload version: it changes (and receivers see it in every
body) only if a field changes meaning or goes away; added fields keep it.
"""

from datetime import datetime
from typing import Any, Literal

import msgspec

from stampede.domain.models import from_ms
from stampede.durable import events

VERSION = 1
HEADER_FIELDS = frozenset(("campaign_id", "seq", "ts", "epoch", "stream_id", "raw"))
"""Event fields that are the stream's bookkeeping, not the message's data."""


def _camel(tag: str) -> str:
    return "".join(part.title() for part in tag.split("_"))


def _data_struct(tag: str, cls: type[events.Event]) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any, Any]] = [("campaign", str, msgspec.NODEFAULT),
                                          ("seq", int, msgspec.NODEFAULT)]
    for f in msgspec.structs.fields(cls):
        if f.name in HEADER_FIELDS:
            continue
        default = f.default if f.default is not msgspec.NODEFAULT else msgspec.NODEFAULT
        fields.append((f.name, f.type, msgspec.field(default=default, name=f.encode_name)))
    return msgspec.defstruct(f"{_camel(tag)}Data", fields, kw_only=True,
                             forbid_unknown_fields=False, module=__name__)


def _envelope(tag: str, data: type[msgspec.Struct]) -> type[msgspec.Struct]:
    return msgspec.defstruct(f"{_camel(tag)}Webhook", [
        ("type", Literal[tag]),
        ("version", Literal[VERSION]),
        ("timestamp", datetime),
        ("data", data),
    ], kw_only=True, module=__name__)


DATA: dict[str, type[msgspec.Struct]] = {
    tag: _data_struct(tag, cls) for tag, cls in events.TYPES.items()}
"""The `data` struct of each event type."""
PAYLOADS: dict[str, type[msgspec.Struct]] = {
    tag: _envelope(tag, data) for tag, data in DATA.items()}
"""The whole body's struct of each event type a receiver can subscribe to."""


def payload(event: events.Event, event_type: str) -> msgspec.Struct:
    """The message of a decoded, known event."""
    fields = {f.name: getattr(event, f.name) for f in msgspec.structs.fields(event)
              if f.name not in HEADER_FIELDS}
    data = DATA[event_type](campaign=event.campaign_id, seq=event.seq, **fields)
    return PAYLOADS[event_type](type=event_type, version=VERSION,
                                timestamp=from_ms(event.ts),
                                data=data)


# -- examples for the OpenAPI document -----------------------------------------

_EXAMPLE_TS = 1_796_169_600_000  # 2026-12-02T00:00:00Z
_SAMPLES: dict[str, Any] = {
    "user": "alice", "giver": "bob", "sku": "tee", "qty": 1, "price": 2500,
    "claim": "launch.7f3a", "deadline": _EXAMPLE_TS + 600_000, "wave": 2, "delta": 50,
    "actor": "operator", "coupon": "launch.c.91b2", "template": "welcome10",
    "redemption": "launch.r.44d1", "merchant": "shop-1", "order": "order-1001",
    "amount": 12_000, "discount": 1000, "uses": 1, "uses_left": 0, "value": 1000,
    "valid_from": _EXAMPLE_TS, "valid_to": _EXAMPLE_TS + 30 * 86_400_000,
    "locator": "WELCOME-7Q2X", "expires": _EXAMPLE_TS + 86_400_000, "reason": "sold_out",
    "n": 3, "refusals": '{"throttled": 3}', "spec": '{"skus": {"tee": {"stock": 100}}}',
    "before": '{"per_user": 1}', "after": '{"per_user": 2}', "wseq": "000000000012",
}


def _sample(name: str, typ: Any, default: Any) -> Any:
    if name in _SAMPLES:
        try:
            return msgspec.convert(_SAMPLES[name], typ)
        except msgspec.ValidationError:
            pass  # the same name with another type in this event
    if default is not msgspec.NODEFAULT:
        return default
    return {int: 1, bool: False, str: name}.get(typ, None)


def example(event_type: str) -> dict[str, Any]:
    """A plausible body of `event_type`, built through its struct (so it is valid)."""
    cls = events.TYPES[event_type]
    fields = {f.name: _sample(f.name, f.type, f.default) for f in msgspec.structs.fields(cls)
              if f.name not in HEADER_FIELDS}
    event = cls(campaign_id="launch", seq=42, ts=_EXAMPLE_TS, **fields)
    built: dict[str, Any] = msgspec.to_builtins(payload(event, event_type))
    return built
