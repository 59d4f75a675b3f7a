"""Rebuilding a drop's coupon keys from the store's events (part of `stampede recover`).

The coupon keys (include/coupons.lua) are folded from the drop's events in
seq order with the rules of the scripts that wrote them: coupons and their
codes, the expiry schedule, per-day counters, stats, redemptions (with their
per-order idempotency), gift offers, per-person and gift counts, wallets,
and the first answers of idempotent coupon claims. The drop's meta fields
come from its spec with each live change (coupon_drop_patched) laid over it
in order; its code prefix from the old meta or its coupons' codes.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis
from sqlalchemy import select

from stampede.domain.coupons import codes
from stampede.domain.coupons.spec import CouponDropSpec
from stampede.domain.coupons.templates import drop_meta
from stampede.durable.events import (
    ClaimHeld,
    CodeClaimed,
    CouponDropPatched,
    CouponExpired,
    CouponIssued,
    CouponRedeemed,
    CouponRolledBack,
    CouponTransferred,
    Event,
    GiftOffered,
    ReferralCodeMinted,
    VoucherHeld,
    VoucherPaid,
    VoucherRefunded,
    from_row,
    names,
)
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys, records
from stampede.state.records import (
    CouponAnswerRecord,
    CouponRecord,
    GiftRecord,
    PaidRecord,
    RedemptionRecord,
)

DAY_MS = 86_400_000
TYPES = names(ClaimHeld, CouponIssued, CouponRedeemed, CouponRolledBack, CouponExpired,
              GiftOffered, CouponTransferred, CodeClaimed, ReferralCodeMinted,
              CouponDropPatched, VoucherHeld, VoucherPaid, VoucherRefunded)
_fields = msgspec.json.Decoder(dict[str, str | bool])
_grow = msgspec.json.Decoder(dict[str, dict[str, int]])


@dataclass
class DropRebuild:
    cid: str
    drop: CouponDropSpec
    skus: list[str]
    events: list[Event]
    number: str = ""
    coupons: dict[str, CouponRecord] = field(default_factory=dict)
    codes: dict[str, str] = field(default_factory=dict)
    day: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    stats: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    redeems: dict[str, RedemptionRecord] = field(default_factory=dict)
    orders: dict[str, str] = field(default_factory=dict)
    """"o|<merchant>|<order>|<coupon>" -> redemption id (the redeems hash's other fields)"""
    gifts: dict[str, GiftRecord] = field(default_factory=dict)
    users: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    wallets: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    claims: dict[str, list[Any]] = field(default_factory=dict)
    """claim -> [idem key, fingerprint, ts, coupon ids, sku] of claims that carried a key"""
    refs: dict[str, str] = field(default_factory=dict)
    """the text fields of cusers: referral codes, their owners, friends referred"""
    patched: dict[str, str] = field(default_factory=dict)
    """meta fields live changes set, laid over the spec's"""
    paid: dict[str, PaidRecord] = field(default_factory=dict)
    """paid vouchers: claim -> its payment state ("pv|<claim>" of cusers)"""
    values: dict[str, int] = field(default_factory=dict)
    """coupon -> its face value issued (a refund gives it back to the budget)"""

    def _stat(self, name: str, by: int, tpl: str, day: int, merchant: str | None = None) -> None:
        for scope in ("*", f"t:{tpl}", f"d:{day}") + ((f"m:{merchant}",) if merchant else ()):
            self.stats[f"{scope}|{name}"] += by

    def fold(self) -> None:
        for ev in self.events:
            day = ev.ts // DAY_MS
            match ev:
                case ClaimHeld():
                    self._claim_held(ev, day)
                case CouponIssued():
                    self._coupon_issued(ev, day)
                case CouponRedeemed():
                    self._coupon_redeemed(ev, day)
                case CouponRolledBack():
                    self._coupon_rolled_back(ev)
                case CouponExpired():
                    self._stat("expired", 1, self._expire(ev), day)
                case GiftOffered():
                    self._gift_offered(ev)
                case CouponTransferred():
                    self._coupon_transferred(ev, day)
                case CodeClaimed():
                    self._code_claimed(ev)
                case ReferralCodeMinted():
                    self.refs[f"rc|{ev.code}"] = f"{ev.user}|{ev.identity}"
                    self.refs[f"ru|{ev.user}"] = ev.code
                case CouponDropPatched():
                    self._drop_patched(ev)
                case VoucherHeld() | VoucherPaid() | VoucherRefunded():
                    self._voucher(ev, day)

    def _voucher(self, ev: VoucherHeld | VoucherPaid | VoucherRefunded, day: int) -> None:
        """Paid vouchers, as coupon_claim/coupon_pay/coupon_refund.lua keep them."""
        if isinstance(ev, VoucherHeld):
            self.paid[ev.claim] = PaidRecord(status="held", payment="", refunded=0)
            if ev.claim in self.claims:  # its remembered answer: held, at its deadline
                self.claims[ev.claim][2] = ev.deadline
                self.claims[ev.claim][4] = "held"
            return
        p = self.paid.setdefault(ev.claim, PaidRecord(status="held", payment="", refunded=0))
        if isinstance(ev, VoucherPaid):
            p.status, p.payment = "paid", ev.payment
            return
        p.status, p.refunded = "refunded", ev.amount
        for coupon in filter(None, ev.coupons.split(",")):
            c = self.coupons[coupon]
            c.status = "refunded"
            self._stat("refunded", 1, c.tpl, day)
            self._stat("value", -self.values.get(coupon, 0), c.tpl, day)

    def _drop_patched(self, ev: CouponDropPatched) -> None:
        """The change's meta fields; a longer validity reaches the template's
        active coupons not yet due (as coupon_patch.lua did)."""
        self.patched.update({k: v for k, v in _fields.decode(ev.after).items()
                             if isinstance(v, str)})
        grow = _grow.decode(ev.grow)
        for c in self.coupons.values():
            g = grow.get(c.tpl)
            if g and c.status == "active" and ev.ts < c.vt:
                c.vt = max(c.vt, g["vt"], c.vf + g["vd"] * DAY_MS if g["vd"] >= 0 else -1)

    def _claim_held(self, ev: ClaimHeld, day: int) -> None:
        if ev.grant:  # a grant bypasses the per-day and per-person counts
            return
        self.day[str(day)] += ev.qty
        self.day[f"{day}|u|{ev.user}"] += ev.qty
        if ev.identity and self.drop.per_person is not None:  # as coupon_claim.lua counts
            self.users[f"p|{ev.identity}"] += ev.qty
        if ev.idem:
            self.claims[ev.claim] = [ev.idem, ev.fp or "", ev.ts, [], ev.sku]

    def _code_claimed(self, ev: CodeClaimed) -> None:
        """The code's counters in cusers, as coupon_claim.lua keeps them."""
        if ev.kind == "promo":
            self.users[f"c|{ev.code}|{ev.user}"] += ev.qty
        elif ev.kind == "referral":
            self.refs[f"rf|{ev.user}"] = ev.referrer
            self.refs[f"ri|{ev.identity}"] = ev.user
            self.users[f"rn|{ev.referrer}"] += 1

    def _coupon_issued(self, ev: CouponIssued, day: int) -> None:
        self.coupons[ev.coupon] = CouponRecord(
            status="active", owner=ev.user, tpl=ev.template, uses=ev.uses, vf=ev.valid_from,
            vt=ev.valid_to, loc=ev.locator, claimed=ev.ts, gift="", claim=ev.claim,
            rev=int(self.patched.get(f"cp_rev:{ev.template}", "0")))  # the changes before it
        self.codes[ev.locator] = ev.coupon
        self.wallets[ev.user].add(ev.coupon)
        self._stat("issued", 1, ev.template, day)
        self._stat("uses", ev.uses, ev.template, day)
        self._stat("value", ev.value, ev.template, day)
        self.values[ev.coupon] = ev.value
        if ev.claim in self.claims and ev.claim not in self.paid:
            self.claims[ev.claim][3].append(ev.coupon)

    def _coupon_redeemed(self, ev: CouponRedeemed, day: int) -> None:
        c = self.coupons[ev.coupon]
        c.uses = ev.uses_left
        c.status = "used" if c.uses == 0 else "active"
        self.day[f"{day}|m|{ev.merchant}"] += 1
        self.redeems[ev.redemption] = RedemptionRecord(
            status="redeemed", coupon=ev.coupon, merchant=ev.merchant, order=ev.order,
            amount=ev.amount, discount=ev.discount, ts=ev.ts, fingerprint=ev.fp, tpl=c.tpl,
            day=day)
        self.orders[f"o|{ev.merchant}|{ev.order}|{ev.coupon}"] = ev.redemption
        self._stat("redeemed", 1, c.tpl, day, ev.merchant)
        self._stat("discount", ev.discount, c.tpl, day, ev.merchant)

    def _coupon_rolled_back(self, ev: CouponRolledBack) -> None:
        r = self.redeems[ev.redemption]
        r.status = "rolled_back"
        c = self.coupons[ev.coupon]
        c.uses = ev.uses_left
        if c.status == "used":
            c.status = "active"
        self.day[f"{r.day}|m|{r.merchant}"] -= 1
        self._stat("rolled_back", 1, r.tpl, r.day, r.merchant)
        self._stat("discount_rolled_back", r.discount, r.tpl, r.day, r.merchant)

    def _expire(self, ev: CouponExpired) -> str:
        """Mark the coupon expired; returns its template."""
        c = self.coupons[ev.coupon]
        c.status = "expired"
        return c.tpl

    def _gift_offered(self, ev: GiftOffered) -> None:
        c = self.coupons[ev.coupon]
        if c.gift:
            self.gifts.pop(c.gift, None)
        c.gift = ev.token
        if c.gift:
            self.gifts[c.gift] = GiftRecord(status="open", coupon=ev.coupon, giver=ev.user,
                                            expires=ev.expires, recipient="", nonce="")

    def _coupon_transferred(self, ev: CouponTransferred, day: int) -> None:
        c = self.coupons[ev.coupon]
        self.codes.pop(c.loc, None)
        self.codes[ev.locator] = ev.coupon
        c.owner, c.loc, c.gift = ev.user, ev.locator, ""
        if ev.token in self.gifts:
            g = self.gifts[ev.token]
            g.status, g.recipient, g.nonce = "accepted", ev.user, ev.nonce
        self.wallets[ev.user].add(ev.coupon)
        if ev.counted:
            self.users[f"g|{ev.user}"] += 1
        self._stat("transferred", 1, c.tpl, day)

    def queue(self, pipe: Any, now: int, idem_ttl_ms: int) -> None:
        """Queue the commands that replace the drop's coupon keys (inside the rebuild's MULTI)."""
        ks = keys.coupon_keys(self.cid)
        k = ks.drop
        pipe.hset(ks.campaign.meta, mapping=drop_meta(self.drop, self.skus, self.number)
                  | self.patched)
        pipe.delete(*k, *(keys.wallet_key(self.cid, u) for u in self.wallets))
        redeems = {r: records.REDEMPTION.encode(v) for r, v in self.redeems.items()}
        mappings: tuple[tuple[str, dict[str, Any]], ...] = (
            (k.cpn, {c: records.COUPON.encode(v) for c, v in self.coupons.items()}),
            (k.codes, self.codes), (k.cday, dict(self.day)), (k.cstats, dict(self.stats)),
            (k.redeems, redeems | self.orders),
            (k.gifts, {g: records.GIFT.encode(v) for g, v in self.gifts.items()}),
            (k.cusers, {**self.users, **self.refs,
                        **{f"pv|{c}": records.PAID.encode(p) for c, p in self.paid.items()}}))
        for key, mapping in mappings:
            if mapping:
                pipe.hset(key, mapping=mapping)
        live = {c: v.vt for c, v in self.coupons.items() if v.status not in ("expired", "refunded")}
        if live:
            pipe.zadd(k.cexp, live)
        for user, ids in self.wallets.items():
            pipe.sadd(keys.wallet_key(self.cid, user), *ids)
        for claim, (idem, fp, ts, ids, sku) in self.claims.items():
            ttl = ts + idem_ttl_ms - now
            if ttl > 0:  # the first answer, as coupon_claim.lua remembers it
                issued = sku if fp.startswith("code:") else ""  # a code claim names its SKU
                issued = "held" if sku == "held" else issued  # a paid voucher's hold
                pipe.set(idem, records.COUPON_ANSWER.encode(
                    CouponAnswerRecord(fingerprint=fp, code=0, reason=issued, claim_id=claim,
                                       at=ts, coupons=ids)), px=ttl)


async def load(store: Store, cid: str, row: Any, spec: Any, old_meta: dict[str, str],
               redis: "Redis") -> DropRebuild | None:
    """The rebuild of a drop (None for a sale): its events read, folded, numbered."""
    if spec is None or spec.coupons is None:
        return None
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid, t.events.c.seq > row.defined_seq,
            t.events.c.seq <= row.applied_seq, t.events.c.type.in_(TYPES))
            .order_by(t.events.c.seq))).all()
    rebuild = DropRebuild(cid, spec.coupons, [s.sku for s in spec.skus],
                          [from_row(r) for r in rows])
    rebuild.fold()
    first = next(iter(rebuild.coupons.values()), None)
    number = old_meta.get("cp_no") or (first.loc[:codes.DROP_CHARS] if first else None)
    if number is None:
        n = int(await redis.hincrby(keys.DROP_NUMBERS, "seq", 1))
        number = codes.encode(n, codes.DROP_CHARS)
    rebuild.number = number
    return rebuild


async def registered(redis: "Redis", rebuild: DropRebuild) -> None:
    """The global indexes of a rebuilt drop: its number and the drop list."""
    await redis.hset(keys.DROP_NUMBERS, str(codes.decode(rebuild.number)), rebuild.cid)
    await redis.sadd(keys.COUPON_DROPS, rebuild.cid)
