"""Stream entries as typed events, and their rows in the `events` table."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(dict[str, str])
_HEADER = ("seq", "type", "ts", "epoch")


class BadEvent(ValueError):
    """A stream entry that cannot be read as an event (a dead-letter candidate)."""


@dataclass(frozen=True, slots=True)
class Event:
    campaign_id: str
    seq: int
    type: str
    ts: int
    epoch: int
    stream_id: str
    data: Mapping[str, str]

    def int(self, name: str) -> int:
        return int(self.data[name])


def from_entry(campaign_id: str, entry_id: str, fields: Mapping[str, str]) -> Event:
    try:
        seq, etype, ts = int(fields["seq"]), fields["type"], int(fields["ts"])
        epoch = int(fields.get("epoch", "0"))
    except (KeyError, ValueError) as exc:
        raise BadEvent(f"entry {entry_id}: {exc!r}") from exc
    if seq < 1:
        raise BadEvent(f"entry {entry_id}: seq {seq}")
    data = {k: v for k, v in fields.items() if k not in _HEADER}
    return Event(campaign_id, seq, etype, ts, epoch, entry_id, data)


def to_row(ev: Event) -> dict[str, Any]:
    return {"campaign_id": ev.campaign_id, "seq": ev.seq, "type": ev.type, "ts": ev.ts,
            "epoch": ev.epoch, "stream_id": ev.stream_id, "data": _json.encode(ev.data).decode()}


def from_row(row: Any) -> Event:
    return Event(row.campaign_id, row.seq, row.type, row.ts, row.epoch, row.stream_id,
                 _decode.decode(row.data))
