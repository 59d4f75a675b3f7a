"""Decoding a campaign's state as `read_status` returns it."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from stampede.domain.models import from_ms
from stampede.state import records

PublicState = Literal["scheduled", "open", "paused", "sold_out", "closed"]


@dataclass(frozen=True)
class SkuCounters:
    sku: str
    price: int
    available: int
    held: int
    sold: int
    released: int
    per_user: int | None
    revenue: int = 0


def _pairs(flat: list[Any]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


@dataclass(frozen=True)
class CampaignSnapshot:
    id: str
    now_ms: int
    meta: dict[str, str]
    skus: list[SkuCounters]
    counts: dict[str, int]
    waves: list[tuple[str, int, int]]
    """Pending waves: (sku, qty, at_ms)."""
    waiting: tuple[int, int, int] = (0, 0, 0)
    """Users on waitlists, waiting-room tickets, users admitted now."""

    @classmethod
    def from_reply(cls, cid: str, reply: list[Any]) -> "CampaignSnapshot":
        _, now, meta, stock, counts, waves, *rest = reply
        fields = _pairs(stock)
        names = sorted({k.rsplit(".", 1)[0] for k in fields})
        skus = []
        for n in names:
            lim = int(fields[f"{n}.lim"])
            skus.append(SkuCounters(n, int(fields[f"{n}.price"]), int(fields[f"{n}.a"]),
                                    int(fields[f"{n}.h"]), int(fields[f"{n}.s"]),
                                    int(fields[f"{n}.r"]), None if lim < 0 else lim,
                                    int(fields.get(f"{n}.rev", 0))))
        pending = []
        for member, score in zip(waves[::2], waves[1::2], strict=True):
            wave = records.WAVE.decode(member)
            pending.append((wave.sku, wave.qty, int(float(score))))
        waiting = tuple(int(n) for n in rest[0]) if rest else (0, 0, 0)
        return cls(cid, int(now), _pairs(meta), skus,
                   {k: int(v) for k, v in _pairs(counts).items()}, pending,
                   waiting)  # type: ignore[arg-type]

    @property
    def opens_ms(self) -> int:
        return int(self.meta["opens_ms"])

    @property
    def closes_ms(self) -> int:
        return int(self.meta["closes_ms"])

    def state(self) -> PublicState:
        stored = self.meta.get("state")
        if stored == "closed" or self.now_ms >= self.closes_ms:
            return "closed"
        if stored == "paused":
            return "paused"
        if self.now_ms < self.opens_ms:
            return "scheduled"
        if not self.waves and all(s.available == 0 for s in self.skus):
            return "sold_out"
        return "open"

    def next_wave_at(self, sku: str) -> datetime | None:
        times = [at for s, _, at in self.waves if s == sku]
        return from_ms(min(times)) if times else None

    def pending_wave_count(self, sku: str) -> int:
        return sum(1 for s, _, _ in self.waves if s == sku)

    def pending_wave_qty(self, sku: str) -> int:
        return sum(q for s, q, _ in self.waves if s == sku)
