"""Grants against a real Valkey and over HTTP: segments, budgets, and the pack a
ticket's check-in grants exactly once, even when the grant step is lost."""

from typing import Any

import msgspec

from stampede import Engine
from stampede.domain.models import CampaignPatch
from stampede.domain.tickets import Scan
from stampede.state import keys
from tests.aftersale.helpers import bought, sale_spec
from tests.aftersale.test_refunds_api import _error
from tests.aftersale.test_tickets import NORTH, SOUTH, _codes
from tests.api.conftest import Api
from tests.coupons.helpers import FIVE_OFF, drop_spec

PACK = {"five": FIVE_OFF, "ten": {**FIVE_OFF, "face_value": 1000}}


def pack_drop(stock: int = 100, **coupons: Any) -> Any:
    return drop_spec(stock=stock, per_user=1, templates=PACK, packs={"welcome": ["five", "ten"]},
                     skus=("welcome", "five"), **coupons)


async def _wallet(engine: Engine, drop: str, user: str) -> set[str]:
    return set(await engine.redis.smembers(keys.wallet_key(drop, user)))


async def test_a_segment_is_granted_once_per_key_past_the_gates(engine: Engine) -> None:
    await engine.define_campaign("fans", pack_drop(stock=5000))
    await engine.patch_campaign("fans", CampaignPatch(state="closed"), "ops")  # gates shut
    users = [f"u{i}" for i in range(1200)]  # more than one script call's batch
    first = await engine.grants.grant("fans", "welcome", users + ["u0"], "k1", "ops:ann")
    assert [r.outcome for r in first[:2]] == ["granted", "granted"]
    assert first[-1].outcome == "already"  # u0 twice in one list: one pack
    assert sum(r.outcome == "granted" for r in first) == 1200
    assert len(await _wallet(engine, "fans", "u7")) == 2  # the pack's two coupons
    again = await engine.grants.grant("fans", "welcome", users[:10], "k1", "ops:ann")
    assert {r.outcome for r in again} == {"already"}
    assert len(await _wallet(engine, "fans", "u7")) == 2
    other = await engine.grants.grant("fans", "welcome", ["u7"], "k2", "ops:ann")
    assert other[0].outcome == "granted"  # another key: another grant (per-user limit 1)
    stats = await engine.coupons.stats("fans")
    assert stats is not None
    events = [e for _, e in await engine.redis.xrange(keys.events_key("fans"), count=10)
              if e.get("type") == "claim_held"]
    assert events and events[0]["grant"] == "ops:ann"


async def test_grants_stop_at_the_budget_and_the_stock(engine: Engine) -> None:
    await engine.define_campaign("fans", pack_drop(stock=5, budget=4500))  # three packs
    results = await engine.grants.grant("fans", "welcome", [f"u{i}" for i in range(6)], "k",
                                        "ops:ann")
    assert [r.outcome for r in results] == ["granted"] * 3 + ["sold_out"] * 3
    await engine.define_campaign("few", pack_drop(stock=2))
    results = await engine.grants.grant("few", "five", ["a", "b", "c"], "k", "ops:ann")
    assert [r.outcome for r in results] == ["granted", "granted", "sold_out"]
    assert [r.outcome for r in await engine.grants.grant("nope", "five", ["a"], "k", "x")] == \
        ["not_found"]


async def _gig(engine: Engine) -> None:
    await engine.define_campaign("fans", pack_drop())
    await engine.define_campaign("gig", sale_spec(  # type: ignore[arg-type]
        tickets={"venue": "arena"}, on_checkin={"drop": "fans", "sku": "welcome"}))


async def test_a_check_in_grants_its_pack_once(engine: Engine) -> None:
    await _gig(engine)
    claim = await bought(engine, "gig", "ann", 2)
    codes = await _codes(engine, "gig", "ann")
    first, = await engine.tickets.check_in(NORTH, [Scan(code=codes[f"{claim}-1"] or "")])
    assert first.verdict == "admitted"
    assert len(await _wallet(engine, "fans", "ann")) == 2
    again, = await engine.tickets.check_in(SOUTH, [Scan(code=codes[f"{claim}-1"] or "")])
    assert again.verdict == "checked_in"
    assert len(await _wallet(engine, "fans", "ann")) == 2
    await engine.tickets.check_in(NORTH, [Scan(code=codes[f"{claim}-2"] or "")])
    assert len(await _wallet(engine, "fans", "ann")) == 4  # one pack per ticket
    assert await engine.redis.hlen(keys.outbox_key("gig")) == 0


async def test_a_lost_grant_step_is_made_by_the_sweeper_once(engine: Engine) -> None:
    """The check-in commits (with its outbox entry) and the process dies before the
    drop's grant: the sweep grants it; sweeping again, or granting again under the
    same ticket's key, issues nothing more."""
    await _gig(engine)
    claim = await bought(engine, "gig", "ann", 1)
    ticket = f"{claim}-1"
    await engine.scripts.run("checkin", [*keys.campaign_keys("gig"), keys.tickets_key("gig"),
                                         keys.checkin_counts_key("gig"),
                                         keys.outbox_key("gig")],
                             [ticket, claim, 1, 0, "arena", "north", "n1"])
    assert await engine.redis.hget(keys.outbox_key("gig"), ticket) == "ann|fans|welcome"
    assert await _wallet(engine, "fans", "ann") == set()
    await engine.sweep("gig")
    assert len(await _wallet(engine, "fans", "ann")) == 2
    assert await engine.redis.hlen(keys.outbox_key("gig")) == 0
    # The grant made but the outbox entry not removed (a crash right after the grant):
    await engine.redis.hset(keys.outbox_key("gig"), ticket, "ann|fans|welcome")
    await engine.sweep("gig")
    assert len(await _wallet(engine, "fans", "ann")) == 2
    assert await engine.redis.hlen(keys.outbox_key("gig")) == 0


async def test_on_checkin_needs_tickets(engine: Engine) -> None:
    spec = sale_spec(on_checkin={"drop": "fans", "sku": "welcome"})
    try:
        await engine.define_campaign("gig", spec)
    except Exception as exc:  # noqa: BLE001 - the ValidationError's message is the point
        assert "on_checkin needs tickets" in str(exc)
    else:
        raise AssertionError("defined")


async def test_segment_grants_over_http(api: Api) -> None:
    drop = msgspec.to_builtins(pack_drop())
    resp = await api.admin.put("/admin/v1/campaigns/fans", json=drop, headers=api.op())
    assert resp.status == 201, await resp.text()
    body = {"sku": "welcome", "users": ["ann", "bob"]}
    headers = {**api.op(), "Idempotency-Key": "spring"}
    resp = await api.admin.post("/admin/v1/campaigns/fans/grants", json=body, headers=headers)
    out = await resp.json()
    assert resp.status == 200 and out["granted"] == 2
    assert [(r["user"], r["outcome"], r["coupons"]) for r in out["results"]] == [
        ("ann", "granted", 2), ("bob", "granted", 2)]
    resp = await api.admin.post("/admin/v1/campaigns/fans/grants", json=body, headers=headers)
    assert (await resp.json())["granted"] == 0
    resp = await api.admin.post("/admin/v1/campaigns/fans/grants", json=body,
                                headers=api.viewer())
    assert resp.status == 403
    for bad in ({"sku": "welcome", "users": []}, {"sku": "welcome", "users": ["bad user"]},
                {"sku": "welcome", "users": ["u"] * 10_001}, {"users": ["a"]}):
        resp = await api.admin.post("/admin/v1/campaigns/fans/grants", json=bad,
                                    headers=api.op())
        assert (await _error(resp))[:2] in ((400, "invalid_request"),
                                            (413, "invalid_request")), bad
