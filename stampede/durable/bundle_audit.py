"""Presales: what `stampede audit` checks of bundle claims (audit.py folds the events in
order; this keeps the bundles). A bundle is held whole: its bundle_held event names
exactly the lines held for it (its `items`, or in an older store the claim_held events
just before it); its lines move together after (an after-sale
refund or transfer of one line leaves it sold, as its confirm did)."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stampede.durable.events import BundleHeld, ClaimHeld

Violate = Callable[..., None]

_AS_SOLD = {"refunded": "confirmed", "transferred": "confirmed"}


@dataclass
class BundleReplay:
    lines: dict[str, list[str]] = field(default_factory=dict)
    """bundle claim -> its line claims (held for it)"""
    pending: dict[str, list[str]] = field(default_factory=dict)
    """line claims held for a bundle whose bundle_held is yet to come"""

    def line(self, ev: ClaimHeld) -> None:
        self.pending.setdefault(ev.bundle, []).append(ev.claim)

    def bundle(self, ev: BundleHeld, violate: Violate) -> None:
        held = self.pending.pop(ev.claim, [])
        if held != ev.lines.split(",") or ev.claim in self.lines:
            violate("bundle_incomplete", claim=ev.claim, seq=ev.seq, lines=ev.lines,
                    held=",".join(held))
        self.lines[ev.claim] = ev.lines.split(",")

    def check(self, claims: dict[str, tuple[str, str, str, int]], violate: Violate) -> None:
        """At the end: no line without its bundle_held, no bundle split."""
        for claim, held in self.pending.items():
            violate("bundle_incomplete", claim=claim, lines="", held=",".join(held))
        for claim, ids in self.lines.items():
            statuses = {_AS_SOLD.get(s, s) for s, *_ in (claims[i] for i in ids if i in claims)}
            if len(statuses) > 1:
                violate("bundle_split", claim=claim, statuses=sorted(statuses))

    def summary(self) -> dict[str, Any]:
        return {"count": len(self.lines)}
