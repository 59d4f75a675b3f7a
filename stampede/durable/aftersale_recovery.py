"""Rebuilding a campaign's after-sale keys from the store (part of `stampede recover`).

The SKU counters and claim statuses come back with the rest of the campaign
(recovery.py); this adds what only the refunds and checkins tables know:
each claim's refund record, the transfer offers, the totals of stats, the units a partly
refunded claim (or one whose tickets moved out alone) no longer counts against its
buyer's limit, the tickets transferred alone (moved), the first
answers of refunds still within the idempotency TTL, and for a ticketed
sale its tickets (checked in or refunded), the check-ins by gate and each
buyer's ticket set, and the outbox of on_checkin and on_confirm grants the
drop has not made. Queued on the rebuild's MULTI, after it.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from stampede.domain.grants import grant_claim_id
from stampede.durable.events import (
    ClaimConfirmed,
    ClaimTransferred,
    TransferOffered,
    from_row,
    names,
)
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys, records
from stampede.state.records import RefundAnswerRecord, RefundRecord, TicketRecord, TransferRecord


@dataclass
class AfterSaleState:
    per_claim: dict[str, RefundRecord] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    """"<sku>.u" and "<sku>.amt" as refund.lua keeps them"""
    partial: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(user, sku) -> units refunded of claims still confirmed (recovery.py takes them
    off the users' units it rebuilds)"""
    given_back: list[tuple[str, int]] = field(default_factory=list)
    """(claim, units) refunded or moved out of claims still confirmed, for its person's
    units (per_person)"""
    answers: list[tuple[str, RefundAnswerRecord, int]] = field(default_factory=list)
    """(idempotency key, first answer, ts)"""
    count: int = 0
    tickets: dict[str, TicketRecord] = field(default_factory=dict)
    gates: Counter[str] = field(default_factory=Counter)
    holders: dict[str, list[str]] | None = None
    """user -> claims whose units are tickets; None: the campaign is not ticketed"""
    transfers: dict[str, TransferRecord] = field(default_factory=dict)
    """token hash -> transfer offer, open or accepted"""
    outbox: dict[str, str] = field(default_factory=dict)
    """on_checkin and on_confirm grants the drop has not made: ticket or
    "confirm:<claim_id>" -> user|drop|sku"""


async def confirm_grants(conn: Any, cid: str, drop: str) -> dict[str, tuple[str, str]]:
    """A sale's on_confirm grants it owes: the drop's grant claim id -> (claim, buyer),
    one per claim confirm.lua confirmed (its claim_confirmed event)."""
    rows = (await conn.execute(select(t.events).where(
        t.events.c.campaign_id == cid, t.events.c.type.in_(names(ClaimConfirmed))))).all()
    owed = {}
    for ev in map(from_row, rows):
        assert isinstance(ev, ClaimConfirmed)
        owed[grant_claim_id(drop, f"confirm:{ev.claim}", ev.user)] = (ev.claim, ev.user)
    return owed


async def granted_of(conn: Any, wanted: list[str]) -> set[str]:
    """Which of the grant claim ids the store holds (in chunks: SQL parameter limits)."""
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        found |= {r[0] for r in await conn.execute(select(t.claims.c.claim_id).where(
            t.claims.c.claim_id.in_(wanted[i:i + 500])))}
    return found


async def load(store: Store, cid: str, ticketed: bool,
               on_checkin: tuple[str, str] | None = None,
               on_confirm: tuple[str, str] | None = None) -> AfterSaleState:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t.refunds).where(t.refunds.c.campaign_id == cid)
                                   .order_by(t.refunds.c.seq))).all()
        checkins = (await conn.execute(select(t.checkins).where(
            t.checkins.c.campaign_id == cid))).all()
        sold = (await conn.execute(select(t.claims.c.claim_id, t.claims.c.user_id).where(
            t.claims.c.campaign_id == cid,
            t.claims.c.status.in_(("confirmed", "refunded"))))).all() if ticketed else []
        confirmed = {r.claim_id for r in await conn.execute(select(t.claims.c.claim_id).where(
            t.claims.c.campaign_id == cid, t.claims.c.status == "confirmed",
            t.claims.c.claim_id.in_(select(t.refunds.c.claim_id).where(
                t.refunds.c.campaign_id == cid))))}
        moves = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid,
            t.events.c.type.in_(names(TransferOffered, ClaimTransferred)))
            .order_by(t.events.c.seq))).all()
        still_confirmed = {r[0] for r in await conn.execute(select(t.claims.c.claim_id).where(
            t.claims.c.campaign_id == cid, t.claims.c.status == "confirmed"))} \
            if moves else set()
        granted: set[str] = set()
        if on_checkin is not None and checkins:
            wanted = [grant_claim_id(on_checkin[0], f"checkin:{c.ticket_id}", c.user_id)
                      for c in checkins]
            granted = await granted_of(conn, wanted)
        owed = await confirm_grants(conn, cid, on_confirm[0]) if on_confirm else {}
        confirm_granted = await granted_of(conn, list(owed)) if owed else set()
    st = AfterSaleState()
    for grant_id, (claim_id, user) in owed.items():
        if grant_id not in confirm_granted and on_confirm is not None:
            st.outbox[f"confirm:{claim_id}"] = f"{user}|{on_confirm[0]}|{on_confirm[1]}"
    for c in checkins:
        if on_checkin is not None and grant_claim_id(
                on_checkin[0], f"checkin:{c.ticket_id}", c.user_id) not in granted:
            st.outbox[c.ticket_id] = f"{c.user_id}|{on_checkin[0]}|{on_checkin[1]}"
        st.tickets[c.ticket_id] = TicketRecord(status="in", gate=c.gate, at=c.scanned_ms,
                                               scanner=c.scanner)
        st.gates[c.gate] += 1
    if ticketed:
        st.holders = {}
        for c in sold:
            st.holders.setdefault(c.user_id, []).append(c.claim_id)
    last: dict[str, Any] = {}
    for r in rows:
        done = st.per_claim.get(r.claim_id, RefundRecord(units=0, amount=0))
        st.per_claim[r.claim_id] = RefundRecord(units=done.units + r.qty,
                                                amount=done.amount + r.amount)
        st.totals[f"{r.sku}.u"] += r.qty
        st.totals[f"{r.sku}.amt"] += r.amount
        last[r.claim_id] = r
        st.count += 1
        for n in filter(None, r.tickets.split(",")):
            st.tickets[f"{r.claim_id}-{n}"] = TicketRecord(status="refunded", gate="",
                                                           at=r.ts, scanner="")
        if r.idem_key and st.answers and st.answers[-1][0] == r.idem_key:
            # a bundle's refund: one row per line, answered as their sums
            first = st.answers[-1][1]
            first.units, first.left = first.units + r.qty, first.left + r.left_qty
            first.amount += r.amount
        elif r.idem_key:
            st.answers.append((r.idem_key, RefundAnswerRecord(
                fingerprint=r.fingerprint or "", code=0, units=r.qty, left=r.left_qty,
                amount=r.amount), r.ts))
    moved_out: list[ClaimTransferred] = []
    for ev in map(from_row, moves):
        if isinstance(ev, TransferOffered):
            st.transfers[ev.token] = TransferRecord(status="open", claim=ev.claim,
                                                    giver=ev.user, expires=ev.expires,
                                                    recipient="", new_claim="",
                                                    unit=ev.ticket)
        elif isinstance(ev, ClaimTransferred):
            if ev.token in st.transfers:
                x = st.transfers[ev.token]
                x.status, x.recipient, x.new_claim = "accepted", ev.user, ev.new_claim
            if ev.ticket:  # one ticket moved out: its code is dead, the giver holds one less
                st.tickets[f"{ev.claim}-{ev.ticket}"] = TicketRecord(
                    status="moved", gate="", at=ev.ts, scanner="")
                moved_out.append(ev)
    for ev in moved_out:  # recovery counted every unit of a claim still confirmed
        if ev.claim in still_confirmed:
            st.partial[(ev.giver, ev.sku)] += 1
            st.given_back.append((ev.claim, 1))
    for claim_id, r in last.items():
        if claim_id in confirmed:  # recovery counted every unit it bought
            units = st.per_claim[claim_id].units
            st.partial[(r.user_id, r.sku)] += units
            st.given_back.append((claim_id, units))
    return st


def queue(pipe: Any, cid: str, st: AfterSaleState, now: int, idem_ttl_ms: int,
          persons: dict[str, str] | None = None) -> int:
    """Queue the refund keys' rebuild; returns the idempotency answers set. `persons`
    (claim -> identity) lets the units given back leave their person's count too."""
    ck = keys.campaign_keys(cid)
    pipe.delete(keys.refunds_key(cid), keys.refund_totals_key(cid), keys.tickets_key(cid),
                keys.checkin_counts_key(cid), keys.transfers_key(cid), keys.outbox_key(cid))
    if st.outbox:  # the sweeper grants them
        pipe.hset(keys.outbox_key(cid), mapping=st.outbox)
    if st.transfers:
        pipe.hset(keys.transfers_key(cid), mapping={
            k: records.TRANSFER.encode(x) for k, x in st.transfers.items()})
    if st.tickets:
        pipe.hset(keys.tickets_key(cid), mapping={
            k: records.TICKET.encode(r) for k, r in st.tickets.items()})
    if st.gates:
        pipe.hset(keys.checkin_counts_key(cid), mapping=dict(st.gates))
    for user, claims in (st.holders or {}).items():
        pipe.delete(keys.ticket_holder_key(cid, user))
        pipe.sadd(keys.ticket_holder_key(cid, user), *claims)
    if st.per_claim:
        pipe.hset(keys.refunds_key(cid), mapping={
            c: records.REFUND.encode(r) for c, r in st.per_claim.items()})
    if st.totals:
        pipe.hset(keys.refund_totals_key(cid), mapping=dict(st.totals))
    for claim_id, units in st.given_back:
        identity = (persons or {}).get(claim_id)
        if identity is not None:
            pipe.hincrby(ck.users, f"~p|{identity}", -units)
    if st.count:
        pipe.hset(ck.counts, "refunds", st.count)
    n = 0
    for key, answer, ts in st.answers:
        ttl = ts + idem_ttl_ms - now
        if ttl > 0:
            pipe.set(key, records.REFUND_ANSWER.encode(answer), px=ttl)
            n += 1
    return n
