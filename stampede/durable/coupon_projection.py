"""Coupon events folded into the `coupons` and `redemptions` tables.

Part of the store's fold (engine.store.projection): events arrive in seq
order per campaign, each at most once. Rows made in this run are written
whole; rows made earlier get their changed columns, grouped by the set of
columns so each group is one executemany.
"""

from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Table, and_, bindparam, case, literal, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stampede.durable.events import (
    CouponDropPatched,
    CouponExpired,
    CouponIssued,
    CouponRedeemed,
    CouponRolledBack,
    CouponTransferred,
    Event,
    VoucherRefunded,
)
from stampede.durable.store import schema as t


@dataclass
class CouponFold:
    new_coupons: dict[str, dict[str, Any]] = field(default_factory=dict)
    coupon_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_redemptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    redemption_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    extensions: list[tuple[str, int, dict[str, dict[str, int]], set[str]]] = field(
        default_factory=list)
    """Live validity changes for rows written earlier: (campaign, ts, growth,
    coupons this batch made inactive before it)."""

    @property
    def pending(self) -> bool:
        """Anything to write."""
        return bool(self.new_coupons or self.coupon_changes or self.new_redemptions
                    or self.redemption_changes or self.extensions)

    def clear(self) -> None:
        for d in (self.new_coupons, self.coupon_changes, self.new_redemptions,
                  self.redemption_changes):
            d.clear()
        self.extensions.clear()

    def _extend(self, ev: CouponDropPatched) -> None:
        """A longer validity reaches the template's active coupons not yet due
        (coupon_patch.lua): rows of this batch here, older rows at flush."""
        grow = _grow.decode(ev.grow)
        if not grow:
            return
        for row in self.new_coupons.values():
            g = grow.get(row["template"])
            if g and row["status"] == "active" and row["valid_to_ms"] > ev.ts:
                row["valid_to_ms"] = max(row["valid_to_ms"], g["vt"],
                                         row["valid_from_ms"] + g["vd"] * DAY_MS
                                         if g["vd"] >= 0 else -1)
        gone = {c for c, ch in self.coupon_changes.items() if ch.get("status", "active")
                != "active"}
        self.extensions.append((ev.campaign_id, ev.ts, grow, gone))

    def _coupon(self, coupon_id: str, seq: int, **changes: Any) -> None:
        target = self.new_coupons.get(coupon_id)
        if target is None:
            target = self.coupon_changes.setdefault(coupon_id, {})
        target.update(changes, updated_seq=seq)

    def apply(self, ev: Event) -> None:
        """Fold one event; events other than the coupon ones change nothing here."""
        match ev:
            case CouponIssued():
                self.new_coupons[ev.coupon] = {
                    "coupon_id": ev.coupon, "campaign_id": ev.campaign_id,
                    "template": ev.template, "user_id": ev.user, "status": "active",
                    "uses": ev.uses, "uses_left": ev.uses, "face_value": ev.value,
                    "valid_from_ms": ev.valid_from, "valid_to_ms": ev.valid_to,
                    "claim_id": ev.claim, "created_ms": ev.ts, "updated_seq": ev.seq}
            case CouponRedeemed():
                self._coupon(ev.coupon, ev.seq, uses_left=ev.uses_left,
                             status="used" if ev.uses_left == 0 else "active")
                self.new_redemptions[ev.redemption] = {
                    "redemption_id": ev.redemption, "campaign_id": ev.campaign_id,
                    "coupon_id": ev.coupon, "merchant_id": ev.merchant, "order_id": ev.order,
                    "order_amount": ev.amount, "discount": ev.discount,
                    "status": "redeemed", "redeemed_ms": ev.ts, "rolled_back_ms": None,
                    "updated_seq": ev.seq}
            case CouponRolledBack():
                self._coupon(ev.coupon, ev.seq, uses_left=ev.uses_left, status="active")
                rid = ev.redemption
                target = (self.new_redemptions.get(rid)
                          or self.redemption_changes.setdefault(rid, {}))
                target.update(status="rolled_back", rolled_back_ms=ev.ts, updated_seq=ev.seq)
            case CouponExpired():
                self._coupon(ev.coupon, ev.seq, status="expired", uses_left=ev.uses_left)
            case CouponTransferred():
                self._coupon(ev.coupon, ev.seq, user_id=ev.user)
            case CouponDropPatched():
                self._extend(ev)
            case VoucherRefunded():  # paid vouchers: the refund voids its coupons
                for coupon in filter(None, ev.coupons.split(",")):
                    self._coupon(coupon, ev.seq, status="refunded")

    async def flush(self, conn: AsyncConnection, insert_many: Any) -> None:
        if self.new_coupons:
            await insert_many(t.coupons, list(self.new_coupons.values()))
        if self.new_redemptions:
            await insert_many(t.redemptions, list(self.new_redemptions.values()))
        for cid, ts, grow, gone in self.extensions:
            await _extend(conn, cid, ts, grow, gone)
        await _update(conn, t.coupons, t.coupons.c.coupon_id, self.coupon_changes)
        await _update(conn, t.redemptions, t.redemptions.c.redemption_id,
                      self.redemption_changes)


DAY_MS = 86_400_000
_grow = msgspec.json.Decoder(dict[str, dict[str, int]])


async def _extend(conn: AsyncConnection, cid: str, ts: int, grow: dict[str, dict[str, int]],
                  gone: set[str]) -> None:
    c = t.coupons.c
    for tpl, g in grow.items():
        target: Any = literal(g["vt"]) if g["vt"] >= 0 else c.valid_from_ms + g["vd"] * DAY_MS
        where = and_(c.campaign_id == cid, c.template == tpl, c.status == "active",
                     c.valid_to_ms > ts)
        if gone:
            where = and_(where, c.coupon_id.not_in(sorted(gone)))
        await conn.execute(update(t.coupons).where(where).values(
            valid_to_ms=case((c.valid_to_ms < target, target), else_=c.valid_to_ms)))


async def _update(conn: AsyncConnection, table: Table, key: Any,
                  changes: dict[str, dict[str, Any]]) -> None:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row_id, cols in changes.items():
        names = tuple(sorted(cols))
        groups.setdefault(names, []).append({"b_id": row_id,
                                             **{f"b_{n}": v for n, v in cols.items()}})
    for names, rows in groups.items():
        # Only ever forward: a replayed older change cannot undo a newer one.
        stmt = (update(table).where(and_(key == bindparam("b_id"),
                                         table.c.updated_seq < bindparam("b_updated_seq")))
                .values({n: bindparam(f"b_{n}") for n in names}))
        await conn.execute(stmt, rows)
