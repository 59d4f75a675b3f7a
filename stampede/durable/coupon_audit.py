"""Coupon invariants for `stampede audit`, recomputed from the stored events.

    over_budget              face value issued above the drop's budget
    uses_negative            a redemption of a coupon with no use left
    bad_coupon_transition    a coupon redeemed, expired or moved when not active,
                             issued twice, or an event's uses disagreeing
    rolled_back_twice        a rollback of a redemption already rolled back (or unknown)

(Issued coupons never pass the quota: each claim's units are the stock's, which
the campaign audit checks; every coupon_issued belongs to a claim.)
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from stampede.durable.events import Event

Violate = Callable[..., None]
_budget_of = msgspec.json.Decoder(dict[str, Any])


@dataclass
class CouponReplay:
    budget: int | None = None
    value: int = 0
    coupons: dict[str, list[Any]] = field(default_factory=dict)
    """coupon -> [status, uses_left, user]"""
    redemptions: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def define(self, spec_json: str) -> None:
        drop = _budget_of.decode(spec_json).get("coupons")
        self.budget = drop.get("budget") if isinstance(drop, dict) else None

    def apply(self, ev: Event, violate: Violate) -> None:
        d, seq = ev.data, ev.seq
        c = self.coupons.get(d.get("coupon", ""))
        self.counts[ev.type] += 1
        if ev.type == "coupon_issued":
            if c is not None:
                violate("bad_coupon_transition", coupon=d["coupon"], seq=seq, event=ev.type)
                return
            self.coupons[d["coupon"]] = ["active", ev.int("uses"), d["user"]]
            self.value += ev.int("value")
            if self.budget is not None and self.value > self.budget:
                violate("over_budget", seq=seq, issued=self.value, budget=self.budget)
        elif ev.type == "coupon_redeemed":
            if c is None or c[0] != "active" or c[1] - 1 != ev.int("uses_left"):
                violate("uses_negative" if c is not None and c[1] <= 0
                        else "bad_coupon_transition", coupon=d["coupon"], seq=seq, event=ev.type)
                return
            c[1] -= 1
            c[0] = "used" if c[1] == 0 else "active"
            self.redemptions[d["redemption"]] = "redeemed"
        elif ev.type == "coupon_rolled_back":
            if self.redemptions.get(d["redemption"]) != "redeemed" or c is None:
                violate("rolled_back_twice", redemption=d["redemption"], seq=seq)
                return
            self.redemptions[d["redemption"]] = "rolled_back"
            c[1] += 1
            c[0] = "active"
        elif ev.type in ("coupon_expired", "coupon_transferred"):
            if c is None or c[0] != "active":
                violate("bad_coupon_transition", coupon=d["coupon"], seq=seq, event=ev.type)
                return
            if ev.type == "coupon_expired":
                c[0] = "expired"
            else:
                c[2] = d["user"]

    def check_projection(self, stored: dict[str, tuple[str, int, str]],
                         redemptions: dict[str, str], violate: Violate) -> None:
        expected = {k: (v[0], v[1], v[2]) for k, v in self.coupons.items()}
        if expected != stored:
            diff = sorted(set(expected.items()) ^ set(stored.items()))[:5]
            violate("projection_mismatch", coupons=[list(x) for x in diff])
        if self.redemptions != redemptions:
            diff2 = sorted(set(self.redemptions.items()) ^ set(redemptions.items()))[:5]
            violate("projection_mismatch", redemptions=[list(x) for x in diff2])

    def summary(self) -> dict[str, Any]:
        return {"issued": len(self.coupons), "face_value_issued": self.value,
                "budget": self.budget, "redeemed": self.counts["coupon_redeemed"],
                "rolled_back": self.counts["coupon_rolled_back"],
                "expired": self.counts["coupon_expired"],
                "transferred": self.counts["coupon_transferred"]}
