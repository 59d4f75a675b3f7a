"""Rebuilding a campaign's after-sale keys from the store (part of `stampede recover`).

The SKU counters and claim statuses come back with the rest of the campaign
(recovery.py); this adds what only the refunds and checkins tables know:
each claim's refund record, the transfer offers, the totals of stats, the units a partly
refunded claim no longer counts against its buyer's limit, the first
answers of refunds still within the idempotency TTL, and for a ticketed
sale its tickets (checked in or refunded), the check-ins by gate and each
buyer's ticket set, and the outbox of on_checkin grants the drop has not
made. Queued on the rebuild's MULTI, after it.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from stampede.domain.grants import grant_claim_id
from stampede.durable.events import ClaimTransferred, TransferOffered, from_row, names
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys, records
from stampede.state.records import RefundAnswerRecord, RefundRecord, TicketRecord, TransferRecord


@dataclass
class AfterSaleState:
    per_claim: dict[str, RefundRecord] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    """"<sku>.u" and "<sku>.amt" as refund.lua keeps them"""
    partial: Counter[str] = field(default_factory=Counter)
    """users-hash field -> units refunded of claims still confirmed"""
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
    """on_checkin grants the drop has not made: ticket -> user|drop|sku"""


async def load(store: Store, cid: str, ticketed: bool,
               on_checkin: tuple[str, str] | None = None) -> AfterSaleState:
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
        granted: set[str] = set()
        if on_checkin is not None and checkins:
            wanted = [grant_claim_id(on_checkin[0], f"checkin:{c.ticket_id}", c.user_id)
                      for c in checkins]
            granted = {r[0] for r in await conn.execute(select(t.claims.c.claim_id).where(
                t.claims.c.claim_id.in_(wanted)))}
    st = AfterSaleState()
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
    for ev in map(from_row, moves):
        if isinstance(ev, TransferOffered):
            st.transfers[ev.token] = TransferRecord(status="open", claim=ev.claim,
                                                    giver=ev.user, expires=ev.expires,
                                                    recipient="", new_claim="")
        elif isinstance(ev, ClaimTransferred) and ev.token in st.transfers:
            x = st.transfers[ev.token]
            x.status, x.recipient, x.new_claim = "accepted", ev.user, ev.new_claim
    for claim_id, r in last.items():
        if claim_id in confirmed:  # recovery counted every unit it bought
            units = st.per_claim[claim_id].units
            st.partial[r.user_id] += units
            st.partial[f"{r.user_id}|{r.sku}"] += units
    return st


def queue(pipe: Any, cid: str, st: AfterSaleState, now: int, idem_ttl_ms: int) -> int:
    """Queue the refund keys' rebuild; returns the idempotency answers set."""
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
    for name, units in st.partial.items():
        pipe.hincrby(ck.users, name, -units)
    if st.count:
        pipe.hset(ck.counts, "refunds", st.count)
    n = 0
    for key, answer, ts in st.answers:
        ttl = ts + idem_ttl_ms - now
        if ttl > 0:
            pipe.set(key, records.REFUND_ANSWER.encode(answer), px=ttl)
            n += 1
    return n
