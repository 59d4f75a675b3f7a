"""Presales rebuilt from the store: presale-code batches, each code's uses, segments.

Redis keeps per campaign the batches (pbatches) and what each code has spent
(pcodes), and the audience segments' members (segments); the store has the
events they came from: `presale_codes_issued`, `claim_held` with the code it
spent, and `segment_changed`. Folding them gives the same hashes
(stampede/state/keys.py PresaleKeys), so a recovered sale refuses a used-up
code exactly as before and keeps each binding; a hold that lapsed or was
cancelled gave its use back (the users hash's "~cr|<code>").
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from stampede.durable.events import (
    BundleHeld,
    ClaimHeld,
    PresaleCodesIssued,
    SegmentChanged,
    from_row,
    names,
)
from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys, records
from stampede.state.records import PresaleBatchRecord


@dataclass
class PresaleState:
    cid: str
    batches: dict[int, PresaleBatchRecord] = field(default_factory=dict)
    spent: Counter[str] = field(default_factory=Counter)
    """code id -> claims it made"""
    bound: dict[str, str] = field(default_factory=dict)
    """code id -> the user a binding batch's code belongs to"""
    segments: dict[str, set[str]] = field(default_factory=dict)
    """segment -> its members"""
    claim_code: dict[str, str] = field(default_factory=dict)
    """claim -> the code it spent, while it may yet be released"""
    returned: Counter[str] = field(default_factory=Counter)
    """code id -> uses given back by holds that lapsed or were cancelled"""

    def release(self, claim: str) -> None:
        """A hold lapsed or was cancelled: its code's use comes back."""
        code = self.claim_code.pop(claim, None)
        if code is not None:
            self.returned[code] += 1

    def in_use(self, code: str) -> int:
        """The claims a code has made less those given back."""
        return self.spent[code] - self.returned[code]

    def fold(self, ev: Any) -> None:
        if isinstance(ev, PresaleCodesIssued):
            self.batches[ev.batch] = PresaleBatchRecord(ev.count, ev.uses, ev.bind, ev.tier,
                                                        ev.ts)
        elif isinstance(ev, SegmentChanged):
            members = self.segments.setdefault(ev.segment, set())
            users = ev.users.split(",")
            if ev.op == "add":
                members.update(users)
            else:
                members.difference_update(users)
        elif isinstance(ev, BundleHeld) and ev.code:  # (older shape: its first line's)
            for line in ev.held_lines():
                self.fold(line)
        elif isinstance(ev, ClaimHeld) and ev.code:
            self.spent[ev.code] += 1
            self.claim_code[ev.claim] = ev.code
            batch = self.batches.get(int(ev.code.split(".")[0]))
            if batch is not None and batch.bind == 1:
                self.bound[ev.code] = ev.user

    def hashes(self) -> tuple[dict[str, str], dict[str, str]]:
        """(pbatches, pcodes) as the scripts keep them."""
        batches: dict[str, str] = {}
        if self.batches:
            batches["seq"] = str(max(self.batches))
        codes: dict[str, str] = {}
        used: Counter[str] = Counter()
        claims: Counter[str] = Counter()
        for code, n in self.spent.items():
            batch = code.split(".")[0]
            codes[f"{code}.n"] = str(n)
            used[batch] += 1
            claims[batch] += n
        for code, user in self.bound.items():
            codes[f"{code}.u"] = user
        for segment, members in self.segments.items():
            if members:
                batches[f"#{segment}"] = str(len(members))
        for number, b in self.batches.items():
            batches[str(number)] = records.PRESALE_BATCH.encode(b)
            if claims[str(number)]:
                batches[f"{number}.codes"] = str(used[str(number)])
                batches[f"{number}.claims"] = str(claims[str(number)])
        return batches, codes

    def queue(self, pipe: Any) -> None:
        """Replace the campaign's presale-code hashes in a MULTI pipeline."""
        pk = keys.presale_keys(self.cid)
        pipe.delete(pk.pbatches, pk.pcodes, pk.segments)
        batches, codes = self.hashes()
        if batches:
            pipe.hset(pk.pbatches, mapping=batches)
        if codes:
            pipe.hset(pk.pcodes, mapping=codes)
        members = [f"{segment}|{user}" for segment, users in self.segments.items()
                   for user in users]
        for start in range(0, len(members), 10_000):  # bounded commands for big segments
            pipe.hset(pk.segments, mapping=dict.fromkeys(members[start:start + 10_000], 1))
        # After the rebuild's users hash (recovery.py): the codes' marks and uses given back.
        marks = {f"~c|{claim}": code for claim, code in self.claim_code.items()}
        marks |= {f"~cr|{code}": str(n) for code, n in self.returned.items() if n}
        if marks:
            pipe.hset(keys.campaign_keys(self.cid).users, mapping=marks)


async def load(store: Store, cid: str) -> PresaleState:
    """The campaign's presale codes as the store's events leave them."""
    state = PresaleState(cid)
    async with store.engine.connect() as conn:
        issued = (await conn.execute(select(t.events).where(
            t.events.c.campaign_id == cid,
            t.events.c.type.in_(names(PresaleCodesIssued, SegmentChanged)))
            .order_by(t.events.c.seq))).all()
        spent = (await conn.execute(select(t.events).where(  # holds that spent a code
            t.events.c.campaign_id == cid, t.events.c.type.in_(names(ClaimHeld, BundleHeld)),
            t.events.c.data.contains('"code"')).order_by(t.events.c.seq))).all()
        for row in [*issued, *spent]:  # batches first: a held claim's binding reads its batch
            state.fold(from_row(row))
        held = list(state.claim_code)
        for start in range(0, len(held), 500):  # SQL parameter limits
            for (claim_id,) in await conn.execute(select(t.claims.c.claim_id).where(
                    t.claims.c.claim_id.in_(held[start:start + 500]),
                    t.claims.c.status.in_(("expired", "cancelled")))):
                state.release(claim_id)
    return state
