"""A sharded campaign is one campaign to the admin lookups: its event listing, export
and audit log show every shard's events, merged in time order, each tagged with its
shard, and paging covers each event once even while events are written between pages."""

from typing import Any

import msgspec
from sqlalchemy import func, select

from stampede import Outcome
from stampede.domain.models import CampaignPatch
from stampede.durable.queries import encode_cursor
from stampede.durable.store import schema as t
from stampede.state import keys
from tests.conftest import campaign_spec
from tests.store.test_lookups import VIEWER, Served, served  # noqa: F401  (fixture)

IDS = [keys.shard_id("hot", k, 3) for k in range(3)]


async def _sell(svc: Served, users: range) -> None:
    for i in users:  # 3 units a user: shards run dry and borrow from each other
        r = await svc.engine.claim("hot", f"u{i}", "tee", qty=3)
        assert r.outcome is Outcome.OK, r


async def _stored(svc: Served) -> int:
    async with svc.store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(t.events).where(
            t.events.c.campaign_id.in_(IDS)))).scalar_one())


def _check_merged(items: list[dict[str, Any]]) -> None:
    """Each event once, each shard's in seq order with no gap, all in time order."""
    assert {e["campaign_id"] for e in items} == {"hot"}
    assert [e["at"] for e in items] == sorted(e["at"] for e in items)
    for k in range(3):
        seqs = [e["seq"] for e in items if e["shard"] == k]
        assert seqs == list(range(1, len(seqs) + 1)), (k, seqs)


async def test_events_and_audit_log_of_every_shard_page_as_one_campaign(
        served: Served) -> None:  # noqa: F811  (the fixture)
    engine = served.engine
    await engine.define_campaign("hot", campaign_spec(stock=24, per_user=3, shards=3),
                                 actor="operator-0")
    await engine.define_campaign("c1", campaign_spec(stock=5), actor="operator-1")
    await _sell(served, range(4))
    await served.persister.drain()
    path = "/admin/v1/campaigns/hot/events"
    first = await served.get(path, limit=4)
    assert len(first["items"]) == 4 and first["next_cursor"]
    await _sell(served, range(4, 8))  # sells out: shards borrow  # written while the operator pages
    await engine.patch_campaign("hot", CampaignPatch(state="paused"), actor="operator-1")
    await served.persister.drain()
    items, cursor = list(first["items"]), first["next_cursor"]
    while cursor:
        page = await served.get(path, limit=4, cursor=cursor)
        items += page["items"]
        cursor = page["next_cursor"]
    _check_merged(items)
    assert len(items) == await _stored(served)  # every shard's, each once
    assert items == (await served.get(path, limit=1000))["items"]
    moves = [e for e in items if (e["actor"] or "").startswith("shard-move:")]
    assert len({e["shard"] for e in moves}) >= 2  # lent on one shard, borrowed on another

    patched = await served.walk(path, 1, type="campaign_patched")
    assert sorted((e["shard"], e["actor"]) for e in patched) == [(k, "operator-1")
                                                                  for k in range(3)]
    resp = await served.admin.get(path, params={"format": "ndjson"}, headers=VIEWER)
    assert resp.status == 200
    assert [msgspec.json.decode(line) for line in (await resp.text()).splitlines()] == items
    resp = await served.admin.get(path, params={"format": "csv"}, headers=VIEWER)
    lines = (await resp.text()).splitlines()
    assert lines[0].split(",")[-1] == "shard" and len(lines) == 1 + len(items)

    log = await served.walk("/admin/v1/audit-log", 2, campaign="hot")
    assert {e["campaign_id"] for e in log} == {"hot"}
    defined = [(e["shard"], e["actor"]) for e in log if e["type"] == "campaign_defined"]
    assert sorted(defined) == [(k, "operator-0") for k in range(3)]
    assert [e["at"] for e in log] == sorted(e["at"] for e in log)
    assert sum(1 for e in log if e["type"] == "stock_adjusted") == len(moves)
    other = await served.walk("/admin/v1/audit-log", 10, campaign="c1")
    assert [(e["campaign_id"], e["shard"]) for e in other] == [("c1", None)]
    c1 = await served.walk("/admin/v1/campaigns/c1/events", 2)
    assert {e["shard"] for e in c1} == {None}
    assert [e["seq"] for e in c1] == list(range(1, len(c1) + 1))
    for claim in (await served.walk("/admin/v1/campaigns/hot/claims", 100))[:4]:
        found = await served.get(f"/admin/v1/claims/{claim['claim_id']}")
        (held,) = [e for e in found["history"] if e["type"] == "claim_held"]
        assert held["campaign_id"] == "hot" and held["shard"] in (0, 1, 2)
        assert held in items  # the same row as the campaign's listing shows
    message = await served.refused(path, {"cursor": encode_cursor("events", [3])})
    assert "cursor" in message
