"""The store's check of a sharded campaign's moves between its shards.

Each shard is stored as a campaign of its own (`<id>` and `<id>:s<k>`, see
stampede/domain/shards.py) and audited alone; a move of units between two shards is
two `stock_adjusted` events in two of them, named by its move id (actor
`shard-move:<move_id>`). Across the shards, every move must be lent once and
borrowed at most once, the same units on both sides: a borrow without its lend, or a
second borrow, would be units made up; a lend without its borrow is in transit (the
sweeper delivers it) and is reported, not counted a violation.
"""

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from stampede.durable.store import Store
from stampede.durable.store import schema as t
from stampede.state import keys

_ACTOR = "shard-move:"


def groups(cids: list[str]) -> dict[str, list[str]]:
    """Sharded campaigns among the store's campaign ids: campaign -> its shard ids."""
    by_base: dict[str, list[str]] = defaultdict(list)
    for cid in cids:
        by_base[keys.shard_of_id(cid)[0]].append(cid)
    return {base: sorted(ids) for base, ids in by_base.items() if len(ids) > 1}


async def check_moves(store: Store, shard_ids: list[str]) -> dict[str, Any]:
    """{moves, in_transit, violations: [...]} over the stored events of these shards."""
    lent: dict[str, list[int]] = defaultdict(list)
    borrowed: dict[str, list[int]] = defaultdict(list)
    # Each side's (shard, the other shard it names): events since `peer` name it.
    sides: dict[str, dict[str, tuple[int, int | None]]] = defaultdict(dict)
    ev = t.events.c
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(ev.campaign_id, ev.data).where(
            ev.campaign_id.in_(shard_ids), ev.type == "stock_adjusted"))
        for scid, data in rows:
            fields = json.loads(data)
            actor = str(fields.get("actor", ""))
            if actor.startswith(_ACTOR):
                delta, move_id = int(fields["delta"]), actor[len(_ACTOR):]
                (lent if delta < 0 else borrowed)[move_id].append(abs(delta))
                peer = fields.get("peer")
                sides[move_id]["out" if delta < 0 else "in"] = (
                    keys.shard_of_id(scid)[1], None if peer is None else int(peer))
    violations: list[dict[str, Any]] = []
    in_transit = 0
    for move_id in sorted(set(lent) | set(borrowed)):
        out, got = lent.get(move_id, []), borrowed.get(move_id, [])
        if len(out) != 1 or len(got) > 1 or (got and got[0] != out[0]) \
                or not _peers_agree(sides[move_id]):
            violations.append({"kind": "shard_move", "move": move_id, "lent": out,
                               "borrowed": got})
        elif not got:
            in_transit += out[0]
    return {"shards": shard_ids, "moves": len(lent), "in_transit": in_transit,
            "violations": violations}


def _peers_agree(sides: dict[str, tuple[int, int | None]]) -> bool:
    """The lend names the shard that borrowed, the borrow the shard that lent (where
    the events name them)."""
    if "out" not in sides or "in" not in sides:
        return True
    (donor, to), (receiver, source) = sides["out"], sides["in"]
    return (to is None or to == receiver) and (source is None or source == donor)
