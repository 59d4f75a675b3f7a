"""Recovery of a sharded campaign's moves between its shards, from the stored events.

A move is two `stock_adjusted` events (actor `shard-move:<move_id>`), each naming the
other shard (`peer`): the lend on the donor, the borrow on the receiver. A shard's
move hash (keys.moves_key) is rebuilt with the shard's own keys, from every shard's
stored events:

- `~out:<sku>` / `~in:<sku>`: the units it lent / borrowed, as stored;
- `in:<move_id>` for every stored borrow, so a move is never borrowed twice;
- `out:<move_id>` for every stored lend whose borrow is not stored: the sweeper
  delivers it, and the receiver's log makes that a no-op if the borrow did happen
  (a live receiver) — so a move caught mid-flight arrives exactly once;
- a stored borrow whose lend is not stored (the receiver's stream was persisted
  ahead of the donor's when Redis was lost) is lent again on the rebuilt donor
  under the same move id, before the donor reopens: otherwise those units would
  be in both shards.
"""

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.outcomes import Outcome
from stampede.state import keys
from stampede.state.scripts import ScriptRegistry

log = logging.getLogger("stampede.recovery")
ACTOR = "shard-move:"


@dataclass(frozen=True)
class Side:
    shard: int
    peer: int | None
    sku: str
    qty: int


@dataclass
class StoredMoves:
    """Every stored move of one sharded campaign, by move id."""
    lends: dict[str, Side] = field(default_factory=dict)
    borrows: dict[str, Side] = field(default_factory=dict)


@dataclass
class MovesPlan:
    """What one shard's move hash is rebuilt to, and the lends to run again."""
    fields: dict[str, str]
    relend: list[tuple[str, int, str, int]]
    """(move_id, receiver, sku, qty): borrowed in the store, the lend missing."""


async def stored_moves(store: Store, cid: str, n: int) -> StoredMoves:
    ids = {keys.shard_id(cid, k, n): k for k in range(n)}
    ev = t.events.c
    found = StoredMoves()
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(ev.campaign_id, ev.data).where(
            ev.campaign_id.in_(list(ids)), ev.type == "stock_adjusted"))
        for scid, data in rows:
            fields: dict[str, Any] = json.loads(data)
            actor = str(fields.get("actor") or "")
            if not actor.startswith(ACTOR):
                continue
            delta, peer = int(fields["delta"]), fields.get("peer")
            side = Side(ids[scid], None if peer is None else int(peer), str(fields["sku"]),
                        abs(delta))
            (found.lends if delta < 0 else found.borrows)[actor[len(ACTOR):]] = side
    return found


def plan(moves: StoredMoves, k: int) -> MovesPlan:
    """Shard k's move hash as the stored events leave it."""
    fields: dict[str, str] = {}
    lent: Counter[str] = Counter()
    borrowed: Counter[str] = Counter()
    for move_id, side in moves.lends.items():
        if side.shard != k:
            continue
        lent[side.sku] += side.qty
        if move_id in moves.borrows:
            continue
        if side.peer is None:  # an event older than `peer`: its receiver is unknown
            log.error("shard move %s (%d x %s) is in transit and names no receiver; "
                      "`stampede audit` reports it", move_id, side.qty, side.sku)
            continue
        fields[f"out:{move_id}"] = f"{side.peer}|{side.sku}|{side.qty}"
    relend = []
    for move_id, side in moves.borrows.items():
        if side.shard == k:
            borrowed[side.sku] += side.qty
            fields[f"in:{move_id}"] = str(side.qty)
        elif side.peer == k and move_id not in moves.lends:
            relend.append((move_id, side.shard, side.sku, side.qty))
    fields |= {f"~out:{sku}": str(q) for sku, q in lent.items()}
    fields |= {f"~in:{sku}": str(q) for sku, q in borrowed.items()}
    return MovesPlan(fields, sorted(relend))


def siblings(scid: str, config: dict[str, str] | None) -> list[str]:
    """The other shards of this shard's campaign ([] if it is not sharded)."""
    n = int((config or {}).get("shards", 1))
    cid, k = keys.shard_of_id(scid)
    return [keys.shard_id(cid, j, n) for j in range(n) if j != k] if n > 1 else []


async def load(store: Store, scid: str, config: dict[str, str] | None) -> MovesPlan | None:
    """The plan for this campaign id if it is a shard of a sharded campaign, else None."""
    n = int((config or {}).get("shards", 1))
    if n <= 1:
        return None
    cid, k = keys.shard_of_id(scid)
    return plan(await stored_moves(store, cid, n), k)


def queue(pipe: Any, scid: str, moves: MovesPlan) -> None:
    """Replace the shard's move hash (inside recovery's MULTI)."""
    pipe.delete(keys.moves_key(scid))
    if moves.fields:
        pipe.hset(keys.moves_key(scid), mapping=moves.fields)


async def relend(redis: Any, scid: str, moves: MovesPlan) -> None:
    """Run again, on the rebuilt (still fenced) donor, the lends the store lost."""
    scripts = ScriptRegistry(redis)
    for move_id, receiver, sku, qty in moves.relend:
        code, lent, _ = await scripts.run(
            "shard_lend", [*keys.campaign_keys(scid), keys.moves_key(scid)],
            [move_id, sku, qty, receiver])
        if int(code) != Outcome.OK or int(lent) != qty:
            log.error("shard %s: move %s was borrowed (%d x %s) but could lend again only "
                      "%s: `stampede audit` reports it", scid, move_id, qty, sku, lent)
