"""`stampede audit`: recompute every campaign from the stored events alone, check invariants.

The events are replayed in seq order with the rules the Lua scripts enforce;
a violation is anything those rules forbid or the projections contradict:

    event_gap           a seq missing between 1 and the last stored one
    oversold            a SKU's available units below zero, or a+h+s != released
    over_user_limit     a hold that took a user past the campaign or SKU limit
    confirmed_twice     a claim confirmed when it already was
    bad_transition      any other status change from a claim that was not held
    refund_not_sold     a refund of a claim that was not confirmed
    refunds_over_sold   a claim refunded of more units than it bought (or an event
                        whose units left disagree with the refunds before it)
    refunded_checked_in a refunded ticket checked in, or a checked-in one refunded
    checked_in_twice    a ticket admitted when it already was
    bad_checkin         a check-in of a ticket no sold claim has (or one moved out)
    grant_missing       a check-in of a sale with on_checkin whose pack the drop has not
                        granted (the one grant per check-in: its claim id is derived
                        from the ticket, so there can be no second); with on_confirm,
                        likewise a confirmed claim whose pack the drop has not granted
    bad_transfer        a transfer of a claim that was not its giver's sold claim, or
                        of another number of units than it had left; of a ticket
                        alone that was not valid
    (a ticket transferred alone and then checked in or refunded under its old claim
    is bad_checkin, or refunded_checked_in)
    projection_mismatch the stored projections differ from the recomputation
    unknown_event       an event of a type this version does not know (a newer
                        version wrote it); the replay stops before it, as the
                        projections do

and for coupon drops those of engine.coupons.audit (over_budget, uses_negative,
bad_coupon_transition, rolled_back_twice, validity_shortened, code_over_limit,
referral_farmed, points_debit_twice); for presale codes:

    presale_code_overused  a hold that spent a code past its batch's uses (less those
                           given back by holds that lapsed or were cancelled), or
                           a code of no issued batch or serial
    presale_code_rebound   a binding batch's code held by a second user

and for the real-name limit (limits.per_person):

    over_person_limit      a hold that took a real person (the identity its
                           event names) past the campaign's per_person limit

and for allocations (skus[].allocations):

    over_allocation        held and sold units taken from an allocation above
                           its qty, or taken from one already returned
    wrong_channel          a hold that took from an allocation not of its
                           channel (the channel its event names)
    allocation_returned_twice  an allocation returned to the shared pool twice

and for the waiting room (its tickets are events):

    queue_ticket_twice     a second ticket for a user who had one
    queue_admitted_out_of_order  an admission that did not start where the last
                           one ended, or admitted more tickets than were taken
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import func, select

from stampede.domain import allocations
from stampede.domain.grants import grant_claim_id
from stampede.domain.models import CampaignSpec
from stampede.durable import shard_audit
from stampede.durable.aftersale_recovery import confirm_grants
from stampede.durable.allocation_recovery import parse_take
from stampede.durable.bundle_audit import BundleReplay
from stampede.durable.coupon_audit import CouponReplay
from stampede.durable.events import (
    AllocationReturned,
    BundleHeld,
    CampaignDefined,
    CampaignPatched,
    ClaimCancelled,
    ClaimConfirmed,
    ClaimEvent,
    ClaimExpired,
    ClaimHeld,
    ClaimRefunded,
    ClaimTransferred,
    Event,
    PresaleCodesIssued,
    QueueAdmitted,
    QueueLapsed,
    QueueTicketIssued,
    StockAdjusted,
    TicketCheckedIn,
    Unknown,
    from_row,
)
from stampede.durable.presale_recovery import PresaleState
from stampede.durable.projection import Fold
from stampede.durable.queue_recovery import RoomRebuild
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys

CHUNK = 5000
_MAX_LISTED = 20  # violations listed per campaign; the count is always exact
_spec_limits = msgspec.json.Decoder(dict[str, Any])
_STATUS: dict[type[Event], str] = {ClaimHeld: "held", ClaimConfirmed: "confirmed",
                                   ClaimExpired: "expired", ClaimCancelled: "cancelled"}


@dataclass
class Replay:
    fold: Fold
    violations: list[dict[str, Any]] = field(default_factory=list)
    violation_count: int = 0
    claims: dict[str, tuple[str, str, str, int]] = field(default_factory=dict)
    """claim -> (status, user, sku, qty)"""
    users: Counter[str] = field(default_factory=Counter)
    user_sku: Counter[tuple[str, str]] = field(default_factory=Counter)
    expected_seq: int = 1
    coupons: CouponReplay = field(default_factory=CouponReplay)
    presale: PresaleState = field(default_factory=lambda: PresaleState(""))
    per_person: int = -1
    """Presales: the campaign's real-name limit (-1 none) and the units it counts."""
    persons: Counter[str] = field(default_factory=Counter)
    claim_person: dict[str, str] = field(default_factory=dict)
    allocs: dict[tuple[str, str], Any] = field(default_factory=dict)
    """Presales: (sku, allocation) -> its spec; units taken from each, those returned."""
    alloc_taken: Counter[tuple[str, str]] = field(default_factory=Counter)
    alloc_returned: set[tuple[str, str]] = field(default_factory=set)
    claim_alloc: dict[str, str] = field(default_factory=dict)
    unknown_at: int = 0
    """The seq of the first event of a type this version does not know (0: none)."""
    refunded: Counter[str] = field(default_factory=Counter)
    """claim -> units refunded"""
    refund_totals: dict[str, list[int]] = field(default_factory=dict)
    """sku -> [units, amount] refunded"""
    tickets: dict[str, str] = field(default_factory=dict)
    """ticket -> in (checked in), refunded, or moved (transferred alone)"""
    moved: Counter[str] = field(default_factory=Counter)
    """claim -> its tickets transferred alone"""
    gates: Counter[str] = field(default_factory=Counter)
    bundles: BundleReplay = field(default_factory=BundleReplay)
    """Presales: bundle claims and their lines."""
    room: RoomRebuild = field(default_factory=RoomRebuild)
    """The waiting room's tickets and admissions, folded as recovery folds them."""

    def violate(self, kind: str, **detail: Any) -> None:
        self.violation_count += 1
        if len(self.violations) < _MAX_LISTED:
            self.violations.append({"kind": kind, **detail})

    def apply(self, ev: Event) -> None:
        if ev.seq != self.expected_seq:
            self.violate("event_gap", missing_from=self.expected_seq, missing_to=ev.seq - 1)
        self.expected_seq = ev.seq + 1
        if self.unknown_at:
            return  # what follows an unknown event cannot be judged without it
        match ev:
            case Unknown():
                self.violate("unknown_event", seq=ev.seq, type=ev.name)
                self.unknown_at = ev.seq
                return
            case CampaignDefined():
                self.users.clear()  # a redefinition starts the campaign over
                self.user_sku.clear()
                self.persons.clear()
                self.claim_person.clear()
                limits = _spec_limits.decode(ev.spec).get("limits") or {}
                self.per_person = limits.get("per_person") or -1
                self._define_allocations(ev.spec)
                self.coupons.define(ev.spec)
            case AllocationReturned():
                key = (ev.sku, ev.allocation)
                if key in self.alloc_returned:
                    self.violate("allocation_returned_twice", sku=ev.sku,
                                 allocation=ev.allocation, seq=ev.seq)
                self.alloc_returned.add(key)
            case PresaleCodesIssued():
                self.presale.fold(ev)
            case ClaimEvent():
                if not self._claim(ev):
                    return  # refused transition: not folded, so later counts stay meaningful
            case ClaimRefunded():
                if not self._refund(ev):
                    return
            case TicketCheckedIn():
                if not self._checkin(ev):
                    return
            case ClaimTransferred():
                if not self._transfer(ev):
                    return
            case BundleHeld():  # its lines first (older shape: claim_held each, before)
                if not all([self._claim(line) for line in ev.held_lines()]):
                    return  # a line refused: not folded, as a claim_held would not be
                self.bundles.bundle(ev, self.violate)
            case CampaignPatched(after=after) if after and '"alq:' in after:
                self._patch_allocations(after)  # presales: allocations patched live
                self.coupons.apply(ev, self.violate)
            case QueueTicketIssued() | QueueAdmitted() | QueueLapsed():
                self._room(ev)
            case _:
                self.coupons.apply(ev, self.violate)
        self.fold.apply(ev)
        touched = [line.sku for line in ev.held_lines()] if isinstance(ev, BundleHeld) \
            else [ev.sku] if isinstance(ev, ClaimEvent | StockAdjusted) else []
        for sku in touched:
            s = self.fold.skus.get(sku)
            if s is not None and s["available"] < 0:
                self.violate("oversold", sku=s["sku"], seq=ev.seq, available=s["available"])

    @property
    def folded_to(self) -> int:
        """The last seq the replay judged: the projections should stand there too."""
        return (self.unknown_at or self.expected_seq) - 1

    def _claim(self, ev: ClaimEvent) -> bool:
        qty, claim, user, sku = ev.qty, ev.claim, ev.user, ev.sku
        status = _STATUS[type(ev)]
        prior = self.claims.get(claim)
        if isinstance(ev, ClaimHeld):
            if prior is not None:
                self.violate("bad_transition", claim=claim, seq=ev.seq, was=prior[0], to=status)
                return False
            self.users[user] += qty
            self.user_sku[(user, sku)] += qty
            limit = self.fold.campaign["per_user"]
            sku_limit = self.fold.sku(sku)["per_user"]
            if not ev.grant and ((limit >= 0 and self.users[user] > limit) or
                                 (sku_limit >= 0 and self.user_sku[(user, sku)] > sku_limit)):
                self.violate("over_user_limit", user=user, sku=sku, seq=ev.seq,
                             units=self.users[user])
            self.claims[claim] = ("held", user, sku, qty)
            if ev.identity and self.per_person >= 0:
                self._person(ev)
            if ev.alloc:
                self._take(ev)
            if ev.code:
                self._code(ev)
            if ev.bundle:
                self.bundles.line(ev)
            return True
        if prior is None or prior[0] != "held":
            kind = "confirmed_twice" if prior and prior[0] == status == "confirmed" \
                else "bad_transition"
            self.violate(kind, claim=claim, seq=ev.seq, was=prior[0] if prior else None,
                         to=status)
            return False
        if not isinstance(ev, ClaimConfirmed):
            self.presale.release(claim)  # a lapsed or cancelled hold gives its code's use back
            self.users[user] -= qty
            self.user_sku[(user, sku)] -= qty
            person = self.claim_person.pop(claim, None)
            if person is not None:
                self.persons[person] -= qty
            for name, n in parse_take(self.claim_alloc.pop(claim, "")):
                if (sku, name) not in self.alloc_returned:  # else they went to the pool
                    self.alloc_taken[(sku, name)] -= n
        self.claims[claim] = (status, user, sku, qty)
        return True


    def _refund(self, ev: ClaimRefunded) -> bool:
        prior = self.claims.get(ev.claim)
        if prior is None or prior[0] != "confirmed":
            self.violate("refund_not_sold", claim=ev.claim, seq=ev.seq,
                         was=prior[0] if prior else None)
            return False
        _, user, sku, qty = prior
        done = self.refunded[ev.claim] + ev.qty
        if done + self.moved[ev.claim] > qty or ev.left != qty - done - self.moved[ev.claim]:
            self.violate("refunds_over_sold", claim=ev.claim, seq=ev.seq, refunded=done,
                         sold=qty, left=ev.left)
            return False
        numbers = [n for n in ev.tickets.split(",") if n]
        used = [n for n in numbers if self.tickets.get(f"{ev.claim}-{n}") in ("in", "moved")]
        if used:
            self.violate("refunded_checked_in", claim=ev.claim, seq=ev.seq, tickets=used)
            return False
        for n in numbers:
            self.tickets[f"{ev.claim}-{n}"] = "refunded"
        self.refunded[ev.claim] = done
        self.users[user] -= ev.qty
        self.user_sku[(user, sku)] -= ev.qty
        if ev.claim in self.claim_person:  # refunded units leave the person's count
            self.persons[self.claim_person[ev.claim]] -= ev.qty
        totals = self.refund_totals.setdefault(sku, [0, 0])
        totals[0] += ev.qty
        totals[1] += ev.amount
        if ev.left == 0:
            self.claims[ev.claim] = ("refunded", user, sku, qty)
        return True


    def _transfer(self, ev: ClaimTransferred) -> bool:
        prior = self.claims.get(ev.claim)
        ticket = f"{ev.claim}-{ev.ticket}"
        units = 1 if ev.ticket else \
            (prior[3] - self.refunded[ev.claim] - self.moved[ev.claim] if prior else 0)
        if prior is None or prior[0] != "confirmed" or prior[1] != ev.giver or \
                prior[2] != ev.sku or ev.qty != units or units < 1 or \
                ev.new_claim in self.claims or \
                (ev.ticket and (ev.ticket > prior[3] or ticket in self.tickets)):
            self.violate("bad_transfer", claim=ev.claim, seq=ev.seq)
            return False
        if ev.ticket:  # one ticket moved out: the claim keeps the others
            self.tickets[ticket] = "moved"
            self.moved[ev.claim] += 1
        else:
            self.claims[ev.claim] = ("transferred", *prior[1:])
        self.claims[ev.new_claim] = ("confirmed", ev.user, ev.sku, ev.qty)
        if ev.claim in self.claim_person:  # the units leave the giver's person...
            self.persons[self.claim_person[ev.claim]] -= ev.qty
        if ev.identity:  # ...and join the recipient's
            self.claim_person[ev.new_claim] = ev.identity
            self.persons[ev.identity] += ev.qty
        self.users[ev.giver] -= ev.qty
        self.user_sku[(ev.giver, ev.sku)] -= ev.qty
        self.users[ev.user] += ev.qty
        self.user_sku[(ev.user, ev.sku)] += ev.qty
        return True

    def _checkin(self, ev: TicketCheckedIn) -> bool:
        prior = self.claims.get(ev.claim)
        unit = ev.ticket.rsplit("-", 1)[-1]
        if prior is None or prior[0] not in ("confirmed", "refunded") or \
                not unit.isdigit() or not 1 <= int(unit) <= prior[3]:
            self.violate("bad_checkin", ticket=ev.ticket, seq=ev.seq)
            return False
        state = self.tickets.get(ev.ticket)
        if state == "moved":  # transferred alone: the old claim's code is dead
            self.violate("bad_checkin", ticket=ev.ticket, seq=ev.seq)
            return False
        if prior[0] == "refunded" or state == "refunded":
            self.violate("refunded_checked_in", ticket=ev.ticket, seq=ev.seq)
            return False
        if state == "in":
            self.violate("checked_in_twice", ticket=ev.ticket, seq=ev.seq)
            return False
        self.tickets[ev.ticket] = "in"
        self.gates[ev.gate] += 1
        return True

    def _room(self, ev: QueueTicketIssued | QueueAdmitted | QueueLapsed) -> None:
        twice, disordered = len(self.room.tickets_twice), len(self.room.out_of_order)
        self.room.fold(ev)
        if len(self.room.tickets_twice) > twice:
            self.violate("queue_ticket_twice", user=self.room.tickets_twice[-1], seq=ev.seq)
        if len(self.room.out_of_order) > disordered:
            self.violate("queue_admitted_out_of_order", seq=ev.seq, served=self.room.served)

    def _define_allocations(self, spec_json: str) -> None:
        self.allocs.clear()
        self.alloc_taken.clear()
        self.alloc_returned.clear()
        self.claim_alloc.clear()
        for sku in _spec_limits.decode(spec_json).get("skus") or []:
            for a in sku.get("allocations") or []:
                self.allocs[(sku["sku"], a["name"])] = a

    def _patch_allocations(self, after: str) -> None:
        """A SKU's allocations as a PATCH replaced them: each one's qty, channels and
        tiers from then on (what holds took from it stays counted)."""
        changed = msgspec.json.decode(after)
        for name_of, qtys in changed.items():
            if not name_of.startswith("alq:"):
                continue
            sku = name_of[4:]
            for name, qty, channels, tiers in allocations.decode_patch(
                    str(changed.get(f"al:{sku}", "")), str(qtys)):
                self.allocs[(sku, name)] = {"name": name, "qty": qty, "channels": channels,
                                            "tiers": tiers}

    def _take(self, ev: ClaimHeld) -> None:
        """A hold that took from allocations: of its channel, within their qty."""
        self.claim_alloc[ev.claim] = ev.alloc
        for name, n in parse_take(ev.alloc):
            key = (ev.sku, name)
            spec = self.allocs.get(key)
            self.alloc_taken[key] += n
            if spec is None or key in self.alloc_returned or \
                    self.alloc_taken[key] > spec["qty"]:
                self.violate("over_allocation", sku=ev.sku, allocation=name, seq=ev.seq,
                             units=self.alloc_taken[key])
            elif spec.get("channels") is not None and ev.channel not in spec["channels"]:
                self.violate("wrong_channel", sku=ev.sku, allocation=name, seq=ev.seq,
                             channel=ev.channel)

    def _person(self, ev: ClaimHeld) -> None:
        """A hold of a per_person campaign: the person's units held and sold, capped."""
        self.claim_person[ev.claim] = ev.identity
        self.persons[ev.identity] += ev.qty
        if self.persons[ev.identity] > self.per_person:
            self.violate("over_person_limit", identity=ev.identity, seq=ev.seq,
                         units=self.persons[ev.identity])

    def _code(self, ev: ClaimHeld) -> None:
        """A hold that spent a presale code: within its batch's uses and binding."""
        bound = self.presale.bound.get(ev.code)
        self.presale.fold(ev)
        batch_no, _, serial = ev.code.partition(".")
        batch = self.presale.batches.get(int(batch_no))
        if batch is None or not 1 <= int(serial) <= batch.count or \
                self.presale.in_use(ev.code) > batch.uses:
            self.violate("presale_code_overused", code=ev.code, seq=ev.seq,
                         claims=self.presale.spent[ev.code])
        elif bound is not None and bound != ev.user:
            self.violate("presale_code_rebound", code=ev.code, seq=ev.seq, user=ev.user)


async def audit_campaign(store: Store, cid: str, with_users: bool = False) -> dict[str, Any]:
    empty = {"epoch": 0, "per_user": -1, "state": "active", "name": "", "spec": ""}
    replay = Replay(Fold(dict(empty), {}))
    last = 0
    async with store.engine.connect() as conn:
        while True:  # keyset pages: memory stays flat however long the history
            rows = (await conn.execute(
                select(t.events).where(t.events.c.campaign_id == cid, t.events.c.seq > last)
                .order_by(t.events.c.seq).limit(CHUNK))).all()
            for row in rows:
                replay.apply(from_row(row))
            # The fold's write-back buffers are not needed here: keep memory flat.
            replay.fold.new_claims.clear()
            replay.fold.status.clear()
            replay.fold.history.clear()
            replay.fold.coupons.clear()
            replay.fold.refunds.clear()
            replay.fold.checkins.clear()
            if len(rows) < CHUNK:
                break
            last = rows[-1].seq
        camp = (await conn.execute(select(t.campaigns).where(
            t.campaigns.c.campaign_id == cid))).one_or_none()
        stored_skus = {r.sku: dict(r._mapping) for r in await conn.execute(
            select(t.skus).where(t.skus.c.campaign_id == cid))}
        stored_claims = {r.claim_id: r.status for r in await conn.execute(
            select(t.claims.c.claim_id, t.claims.c.status).where(
                t.claims.c.campaign_id == cid))}
        stored_coupons = {r.coupon_id: (r.status, r.uses_left, r.user_id)
                          for r in await conn.execute(select(t.coupons).where(
                              t.coupons.c.campaign_id == cid))}
        stored_redemptions = {r.redemption_id: r.status for r in await conn.execute(
            select(t.redemptions.c.redemption_id, t.redemptions.c.status).where(
                t.redemptions.c.campaign_id == cid))}
        stored_checkins = Counter(r.ticket_id for r in await conn.execute(
            select(t.checkins.c.ticket_id).where(t.checkins.c.campaign_id == cid)))
        stored_refunds: Counter[str] = Counter()
        for r in await conn.execute(select(t.refunds.c.claim_id, t.refunds.c.qty).where(
                t.refunds.c.campaign_id == cid)):
            stored_refunds[r.claim_id] += r.qty
        dead = (await conn.execute(select(func.count()).select_from(t.dead_letters).where(
            t.dead_letters.c.campaign_id == cid))).scalar_one()
    _check_totals(replay)
    replay.bundles.check(replay.claims, replay.violate)
    _check_projections(replay, camp, stored_skus, stored_claims)
    if camp is not None and camp.applied_seq == replay.folded_to:
        replay.coupons.check_projection(stored_coupons, stored_redemptions, replay.violate)
        admitted = Counter(k for k, v in replay.tickets.items() if v == "in")
        if stored_checkins != admitted:
            replay.violate("projection_mismatch", checkins=sorted(
                set(stored_checkins) ^ set(admitted))[:5])
        if stored_refunds != replay.refunded:
            replay.violate("projection_mismatch", refunds=sorted(
                set(stored_refunds.items()) ^ set(replay.refunded.items()))[:5])
    sku_counts = {name: {k: s[k] for k in ("released", "available", "held", "sold", "expired",
                                           "cancelled")}
                  for name, s in sorted(replay.fold.skus.items())}
    users = {u: n for u, n in replay.users.items() if n}
    summary: dict[str, Any] = {
        "last_seq": replay.expected_seq - 1, "epoch": replay.fold.campaign["epoch"],
        "skus": sku_counts,
        "claims": dict(Counter(status for status, *_ in replay.claims.values())),
        "users": {"count": len(users), "max_units": max(users.values(), default=0)},
        "dead_letters": dead, "violations": replay.violation_count,
        "violation_samples": replay.violations}
    if replay.coupons.coupons:
        summary["coupons"] = replay.coupons.summary()
    if replay.bundles.lines:
        summary["bundles"] = replay.bundles.summary()
    if replay.gates:
        summary["checkins"] = dict(sorted(replay.gates.items()))
    if replay.room.places:
        summary["waiting_room"] = {"tickets": len(replay.room.places),
                                   "admitted": replay.room.served,
                                   "lapsed": replay.room.lapsed}
    if replay.refund_totals:
        summary["refunds"] = {sku: {"units": u, "amount": a}
                              for sku, (u, a) in sorted(replay.refund_totals.items())}
    if with_users:
        summary["users"]["units"] = dict(sorted(users.items()))
    return summary


def _check_totals(replay: Replay) -> None:
    for name, s in replay.fold.skus.items():
        if s["available"] + s["held"] + s["sold"] != s["released"]:
            replay.violate("oversold", sku=name, released=s["released"],
                           accounted=s["available"] + s["held"] + s["sold"])


def _check_projections(replay: Replay, camp: Any, skus: dict[str, dict[str, Any]],
                       claims: dict[str, str]) -> None:
    last = replay.folded_to
    if camp is None or camp.applied_seq != last:
        replay.violate("event_gap", applied_seq=camp.applied_seq if camp else 0, last_seq=last)
        return  # projections stop at the gap: comparing them would only repeat it
    for name, s in replay.fold.skus.items():
        stored = skus.get(name)
        if stored is None or any(stored[k] != s[k] for k in ("released", "available", "held",
                                                               "sold", "expired", "cancelled")):
            replay.violate("projection_mismatch", sku=name)
    expected = {c: st for c, (st, *_rest) in replay.claims.items()}
    if expected != claims:
        diff = sorted(set(expected.items()) ^ set(claims.items()))[:5]
        replay.violate("projection_mismatch", claims=[list(d) for d in diff])


async def audit(store: Store, campaign: str | None = None,
                with_users: bool = False) -> dict[str, Any]:
    """The JSON summary of `stampede audit`: `ok` is false on any violation, and with
    an `error` when there is nothing to audit (an unknown campaign, an empty store)."""
    async with store.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(select(t.events.c.campaign_id).distinct())]
        ids += [r[0] for r in await conn.execute(select(t.campaigns.c.campaign_id))]
    if campaign is not None:  # a sharded campaign is audited with its shards
        shards_of = [cid for cid in ids if keys.shard_of_id(cid)[0] == campaign]
    if campaign is not None and campaign not in ids:
        return {"ok": False, "error": f"no campaign {campaign!r} in the store",
                "violations": 0, "campaigns": {}}
    if not ids:  # nothing to vouch for: a wrong store URL must not pass as clean
        return {"ok": False, "error": "the store holds no campaign", "violations": 0,
                "campaigns": {}}
    cids = sorted(set(ids) if campaign is None else {campaign, *shards_of})
    campaigns = {cid: await audit_campaign(store, cid, with_users) for cid in cids}
    for cid in cids:
        await _check_grants(store, cid, campaigns[cid])
    for base, shard_ids in shard_audit.groups(cids).items():  # moves between shards
        moves = await shard_audit.check_moves(store, shard_ids)
        campaigns[base]["shard_moves"] = moves
        campaigns[base]["violations"] += len(moves["violations"])
    total = sum(c["violations"] for c in campaigns.values())  # grants' checks included
    return {"ok": total == 0, "violations": total, "campaigns": campaigns}


async def _check_grants(store: Store, cid: str, summary: dict[str, Any]) -> None:
    """One pack per check-in of a sale that grants on check-in, and one per confirmed
    claim of a sale that grants on confirm (across two campaigns)."""
    async with store.engine.connect() as conn:
        spec_json = (await conn.execute(select(t.campaigns.c.spec).where(
            t.campaigns.c.campaign_id == cid))).scalar_one_or_none()
        if not spec_json:
            return
        spec = msgspec.json.decode(spec_json, type=CampaignSpec)
        if spec.on_checkin is not None:
            drop = spec.on_checkin.drop
            wanted = {grant_claim_id(drop, f"checkin:{r.ticket_id}", r.user_id): r.ticket_id
                      for r in await conn.execute(select(t.checkins).where(
                          t.checkins.c.campaign_id == cid))}
            found = await _grant_qty(conn, list(wanted))
            missing = sorted(wanted[c] for c in wanted if found.get(c) != 1)
            summary["grants"] = {"checkins": len(wanted), "granted": len(found)}
            _missing(summary, drop, "tickets", missing)
        if spec.on_confirm is not None:
            drop = spec.on_confirm.drop
            owed = await confirm_grants(conn, cid, drop)
            found = await _grant_qty(conn, list(owed))
            missing = sorted(owed[c][0] for c in owed if found.get(c) != 1)
            summary["confirm_grants"] = {"confirmed": len(owed), "granted": len(found)}
            _missing(summary, drop, "claims", missing)


async def _grant_qty(conn: Any, claim_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i in range(0, len(claim_ids), 500):  # SQL parameter limits
        found |= {r.claim_id: r.qty for r in await conn.execute(
            select(t.claims.c.claim_id, t.claims.c.qty).where(
                t.claims.c.claim_id.in_(claim_ids[i:i + 500])))}
    return found


def _missing(summary: dict[str, Any], drop: str, what: str, missing: list[str]) -> None:
    if missing:
        summary["violations"] += len(missing)
        summary["violation_samples"].append({"kind": "grant_missing", "drop": drop,
                                             what: missing[:5]})
