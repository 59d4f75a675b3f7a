"""Coupon invariants for `stampede audit`, recomputed from the stored events.

    over_budget              face value issued above the drop's budget
    uses_negative            a redemption of a coupon with no use left
    bad_coupon_transition    a coupon redeemed, expired or moved when not active,
                             issued twice, or an event's uses disagreeing
    rolled_back_twice        a rollback of a redemption already rolled back (or unknown)
    code_over_limit          a user's claims of a promo code above its per_user
    referral_farmed          a friend (account or identity) referred twice, a member
                             referring themselves (account or identity), or a
                             referral with a code no member minted
    points_debit_twice       two claims paid with one points debit
    validity_shortened       a live template change whose validity is shorter than
                             before (coupon rules: validity may only grow)
    voucher_unpaid_issued    a paid voucher's coupon issued before its payment
                             (voucher_paid), or a payment of a claim never held
    voucher_bad_refund       a refund of a voucher not paid, refunded twice, or
                             whose coupons were not all active and unused
    (a refunded voucher's coupon redeemed is a bad_coupon_transition)

(Issued coupons never pass the quota: each claim's units are the stock's, which
the campaign audit checks; every coupon_issued belongs to a claim.)
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from stampede.durable.events import (
    CodeClaimed,
    CouponDropPatched,
    CouponExpired,
    CouponIssued,
    CouponRedeemed,
    CouponRolledBack,
    CouponTransferred,
    Event,
    PointsExchanged,
    ReferralCodeMinted,
    VoucherHeld,
    VoucherPaid,
    VoucherRefunded,
    type_name,
)

Violate = Callable[..., None]
_budget_of = msgspec.json.Decoder(dict[str, Any])
_fields = msgspec.json.Decoder(dict[str, str | bool])


@dataclass
class CouponReplay:
    budget: int | None = None
    value: int = 0
    coupons: dict[str, list[Any]] = field(default_factory=dict)
    """coupon -> [status, uses_left, user]"""
    redemptions: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    codes: "CodeReplay" = field(default_factory=lambda: CodeReplay())
    debits: dict[str, str] = field(default_factory=dict)
    """points debit -> the claim it paid"""
    vouchers: dict[str, str] = field(default_factory=dict)
    """paid vouchers: claim -> held, paid or refunded"""

    def define(self, spec_json: str) -> None:
        drop = _budget_of.decode(spec_json).get("coupons")
        self.budget = drop.get("budget") if isinstance(drop, dict) else None
        promo = drop.get("promo_codes") if isinstance(drop, dict) else None
        self.codes.per_user = {code: int(p.get("per_user", 1))
                               for code, p in (promo or {}).items()}

    def apply(self, ev: Event, violate: Violate) -> None:
        """Judge one event; events other than the coupon ones are not this replay's."""
        match ev:
            case CouponIssued():
                self.counts["issued"] += 1
                if self.vouchers.get(ev.claim, "paid") != "paid":
                    violate("voucher_unpaid_issued", claim=ev.claim, coupon=ev.coupon,
                            seq=ev.seq)
                if ev.coupon in self.coupons:
                    violate("bad_coupon_transition", coupon=ev.coupon, seq=ev.seq,
                            event=type_name(ev))
                    return
                self.coupons[ev.coupon] = ["active", ev.uses, ev.user]
                self.value += ev.value
                if self.budget is not None and self.value > self.budget:
                    violate("over_budget", seq=ev.seq, issued=self.value, budget=self.budget)
            case CouponRedeemed():
                self.counts["redeemed"] += 1
                c = self.coupons.get(ev.coupon)
                if c is None or c[0] != "active" or c[1] - 1 != ev.uses_left:
                    violate("uses_negative" if c is not None and c[1] <= 0
                            else "bad_coupon_transition", coupon=ev.coupon, seq=ev.seq,
                            event=type_name(ev))
                    return
                c[1] -= 1
                c[0] = "used" if c[1] == 0 else "active"
                self.redemptions[ev.redemption] = "redeemed"
            case CouponRolledBack():
                self.counts["rolled_back"] += 1
                c = self.coupons.get(ev.coupon)
                if self.redemptions.get(ev.redemption) != "redeemed" or c is None:
                    violate("rolled_back_twice", redemption=ev.redemption, seq=ev.seq)
                    return
                self.redemptions[ev.redemption] = "rolled_back"
                c[1] += 1
                c[0] = "active"
            case CouponExpired() | CouponTransferred():
                self._settle(ev, violate)
            case CodeClaimed() | ReferralCodeMinted():
                self.codes.apply(ev, violate)
            case PointsExchanged():
                if ev.debit in self.debits:
                    violate("points_debit_twice", debit=ev.debit, seq=ev.seq,
                            claims=[self.debits[ev.debit], ev.claim])
                self.debits[ev.debit] = ev.claim
                self.counts["points"] += ev.points
            case CouponDropPatched():
                self._patched(ev, violate)
            case VoucherHeld() | VoucherPaid() | VoucherRefunded():
                self._voucher(ev, violate)

    def _voucher(self, ev: VoucherHeld | VoucherPaid | VoucherRefunded,
                 violate: Violate) -> None:
        """Paid vouchers: held, then paid, then (maybe) refunded whole and unused."""
        status = self.vouchers.get(ev.claim)
        if isinstance(ev, VoucherHeld):
            self.counts["vouchers_held"] += 1
            self.vouchers[ev.claim] = "held"
        elif isinstance(ev, VoucherPaid):
            self.counts["vouchers_paid"] += 1
            self.counts["voucher_revenue"] += ev.amount
            if status != "held":
                violate("voucher_unpaid_issued", claim=ev.claim, seq=ev.seq)
            self.vouchers[ev.claim] = "paid"
        else:
            self.counts["vouchers_refunded"] += 1
            self.counts["voucher_refunds"] += ev.amount
            coupons = [self.coupons.get(c) for c in ev.coupons.split(",") if c]
            if status != "paid" or any(c is None or c[0] != "active" for c in coupons):
                violate("voucher_bad_refund", claim=ev.claim, seq=ev.seq)
            for c in coupons:
                if c is not None:
                    c[0] = "refunded"
            self.value -= ev.value
            self.vouchers[ev.claim] = "refunded"

    def _patched(self, ev: CouponDropPatched, violate: Violate) -> None:
        """A live change: its templates' validity (cp_tpl vt, vd) may only grow."""
        self.counts["patched"] += 1
        before, after = _fields.decode(ev.before), _fields.decode(ev.after)
        for name, new in after.items():
            old = before.get(name)
            if not name.startswith("cp_tpl:") or not isinstance(old, str) \
                    or not isinstance(new, str):
                continue
            o, n = _budget_of.decode(old), _budget_of.decode(new)
            if n["vt"] < o["vt"] or n["vd"] < o["vd"]:
                violate("validity_shortened", template=name[7:], seq=ev.seq)

    def _settle(self, ev: CouponExpired | CouponTransferred, violate: Violate) -> None:
        expired = isinstance(ev, CouponExpired)
        self.counts["expired" if expired else "transferred"] += 1
        c = self.coupons.get(ev.coupon)
        if c is None or c[0] != "active":
            violate("bad_coupon_transition", coupon=ev.coupon, seq=ev.seq, event=type_name(ev))
            return
        if expired:
            c[0] = "expired"
        else:
            c[2] = ev.user

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
                "budget": self.budget, "redeemed": self.counts["redeemed"],
                "rolled_back": self.counts["rolled_back"], "expired": self.counts["expired"],
                "transferred": self.counts["transferred"],
                "points_exchanged": len(self.debits), "points": self.counts["points"],
                "live_changes": self.counts["patched"],
                "vouchers_held": self.counts["vouchers_held"],
                "vouchers_paid": self.counts["vouchers_paid"],
                "voucher_revenue": self.counts["voucher_revenue"],
                "vouchers_refunded": self.counts["vouchers_refunded"],
                "voucher_refunds": self.counts["voucher_refunds"]}


@dataclass
class CodeReplay:
    """Promo codes' per-user limits and referrals' once-per-friend rule, replayed.

    A drop redefined with other codes keeps its counts: a redefinition is only
    allowed before the first claim, so there are none to keep."""
    per_user: dict[str, int] = field(default_factory=dict)
    used: Counter[tuple[str, str]] = field(default_factory=Counter)
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)
    """referral code -> (member, identity)"""
    friends: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)

    def apply(self, ev: CodeClaimed | ReferralCodeMinted, violate: Violate) -> None:
        if isinstance(ev, ReferralCodeMinted):
            self.owners[ev.code] = (ev.user, ev.identity)
            return
        if ev.kind == "promo":
            self.used[(ev.code, ev.user)] += ev.qty
            limit = self.per_user.get(ev.code)
            if limit is None or self.used[(ev.code, ev.user)] > limit:
                violate("code_over_limit", code=ev.code, user=ev.user, seq=ev.seq,
                        used=self.used[(ev.code, ev.user)], limit=limit)
            return
        owner = self.owners.get(ev.code)
        if (owner is None or owner[0] != ev.referrer or ev.user == ev.referrer
                or ev.identity in ("", owner[1]) or ev.user in self.friends
                or ev.identity in self.people):
            violate("referral_farmed", code=ev.code, user=ev.user, seq=ev.seq)
        self.friends.add(ev.user)
        self.people.add(ev.identity)
