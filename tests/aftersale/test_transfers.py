"""Transfers of sold claims against a real Valkey and over HTTP: a single-use token,
the old tickets die, the recipient's limits per the campaign's rule, history kept."""

import asyncio
from typing import Any

from stampede import Engine, Outcome, Settings
from stampede.domain.tickets import Scan
from stampede.state import keys, records
from tests.aftersale.helpers import bought, check_refund_invariants, refund, sale_spec
from tests.aftersale.test_refunds_api import SPEC, _error, _user
from tests.aftersale.test_tickets import NORTH, _codes
from tests.api.conftest import Api
from tests.domain.test_concurrency import _clone


def transferable(recipient_limits: bool = True, per_user: int | None = 2,
                 **extra: Any) -> Any:
    return sale_spec(stock=10, per_user=per_user, tickets={"venue": "arena"},
                     transfers={"recipient_limits": recipient_limits}, **extra)


async def _give(engine: Engine, claim: str, giver: str, token: str = "") -> str:
    token = token or f"{claim.split('.')[0]}.{'ab' * 16}"
    offer = await engine.transfers.offer(claim, giver, token)
    assert offer.outcome is Outcome.OK, offer
    return token


async def test_a_transfer_reissues_the_claim_and_the_old_tickets_die(engine: Engine) -> None:
    await engine.define_campaign("gig", transferable())
    claim = await bought(engine, "gig", "ann", 2)
    old_codes = await _codes(engine, "gig", "ann")
    token = await _give(engine, claim, "ann")
    taken = await engine.transfers.accept(token, "bob")
    assert taken.outcome is Outcome.OK and taken.new_claim_id
    new = taken.new_claim_id
    assert new != claim and keys.campaign_of_claim(new) == "gig"
    old_view = await engine.get_claim(claim, "ann")
    assert old_view is not None and old_view.status == "transferred"  # history kept
    new_view = await engine.get_claim(new, "bob")
    assert new_view is not None and (new_view.status, new_view.qty) == ("confirmed", 2)
    assert await engine.tickets.mine("gig", "ann") == []
    bob_codes = await _codes(engine, "gig", "bob")
    assert sorted(bob_codes) == [f"{new}-1", f"{new}-2"]
    dead = await engine.tickets.check_in(NORTH, [Scan(code=c or "") for c in old_codes.values()])
    assert [v.verdict for v in dead] == ["not_found", "not_found"]
    live, = await engine.tickets.check_in(NORTH, [Scan(code=bob_codes[f"{new}-1"] or "")])
    assert live.verdict == "admitted"
    again = await engine.transfers.accept(token, "bob")  # a retried accept: the same claim
    assert again.new_claim_id == new
    used = await engine.transfers.accept(token, "cat")
    assert (used.outcome, used.reason) == (Outcome.CONFLICT, "transfer_used")
    # bob may not pass on a claim with a ticket checked in
    refused = await engine.transfers.offer(new, "bob", "gig." + "cd" * 16)
    assert refused.reason == "transfer_checked_in"
    users = await engine.redis.hgetall(keys.campaign_keys("gig").users)
    assert "ann" not in users and sum(records.decode_units(users["bob"]).values()) == 2
    await check_refund_invariants(engine, "gig")


async def test_the_recipients_limits_apply_per_the_campaigns_rule(engine: Engine) -> None:
    await engine.define_campaign("gig", transferable(recipient_limits=True))
    claim = await bought(engine, "gig", "ann", 2)
    await bought(engine, "gig", "bob", 1)
    token = await _give(engine, claim, "ann")
    over = await engine.transfers.accept(token, "bob")
    assert (over.outcome, over.reason, over.params) == (Outcome.LIMIT_EXCEEDED, "per_user",
                                                        {"limit": 2, "held": 1})
    await engine.define_campaign("free", transferable(recipient_limits=False))
    claim = await bought(engine, "free", "ann", 2)
    await bought(engine, "free", "bob", 2)
    token = await _give(engine, claim, "ann", "free." + "ef" * 16)
    assert (await engine.transfers.accept(token, "bob")).outcome is Outcome.OK


async def test_refused_transfers(engine: Engine) -> None:
    await engine.define_campaign("gig", transferable())
    await engine.define_campaign("plain", sale_spec(tickets={"venue": "arena"}))
    plain = await bought(engine, "plain", "ann", 1)
    assert (await engine.transfers.offer(plain, "ann", "plain." + "00" * 16)).reason == \
        "transfers_off"
    claim = await bought(engine, "gig", "ann", 2)
    assert (await engine.transfers.offer(claim, "bob", "gig." + "00" * 16)).reason == "no_claim"
    token = await _give(engine, claim, "ann")
    assert (await engine.transfers.accept(token, "ann")).reason == "transfer_to_self"
    assert (await engine.transfers.accept("gig." + "11" * 16, "bob")).reason == "no_transfer"
    assert (await engine.transfers.accept("junk", "bob")).reason == "no_transfer"
    assert (await refund(engine, claim, qty=2)).outcome is Outcome.OK  # refunded meanwhile
    assert (await engine.transfers.accept(token, "bob")).reason == "transfer_stale"
    await engine.set_clock_offset("gig", 0)
    other = await bought(engine, "gig", "cat", 1)
    token = await _give(engine, other, "cat", "gig." + "22" * 16)
    await engine.set_clock_offset("gig", 86_400_001)
    assert (await engine.transfers.accept(token, "dan")).reason == "transfer_expired"


async def test_a_partly_refunded_claim_moves_its_units_left(engine: Engine) -> None:
    await engine.define_campaign("gig", transferable(per_user=None))
    claim = await bought(engine, "gig", "ann", 3)
    assert (await refund(engine, claim, qty=1)).outcome is Outcome.OK
    taken = await engine.transfers.accept(await _give(engine, claim, "ann"), "bob")
    assert taken.new_claim_id
    view = await engine.get_claim(taken.new_claim_id, "bob")
    assert view is not None and view.qty == 2
    done = await refund(engine, taken.new_claim_id)
    assert done.view and done.view.refunded == 2
    await check_refund_invariants(engine, "gig")


async def test_one_token_accepted_by_many_at_once_goes_to_one(engine: Engine,
                                                              settings: Settings) -> None:
    await engine.define_campaign("gig", transferable(per_user=None))
    claim = await bought(engine, "gig", "ann", 1)
    token = await _give(engine, claim, "ann")
    engines = [engine] + [await _clone(engine, settings) for _ in range(3)]
    try:
        results = await asyncio.gather(*(engines[i % 4].transfers.accept(token, f"r{i}")
                                         for i in range(40)))
    finally:
        for other in engines[1:]:
            await other.close()
    assert sum(r.outcome is Outcome.OK for r in results) == 1
    assert all(r.reason == "transfer_used" for r in results if r.outcome is not Outcome.OK)
    await check_refund_invariants(engine, "gig")


async def test_transfers_over_http(api: Api) -> None:
    spec = {**SPEC, "tickets": {"venue": "arena"}, "transfers": {"offer_ttl_s": 600}}
    await api.admin.put("/admin/v1/campaigns/gig", json=spec, headers=api.op())
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ga"},
                                 headers=_user("ann"))
    claim = (await resp.json())["claim_id"]
    resp = await api.public.post(f"/v1/claims/{claim}/transfer", headers=_user("ann"))
    status, code, message = await _error(resp)
    assert (status, code) == (409, "conflict") and "is held" in message
    await api.public.post(f"/v1/claims/{claim}/confirm", headers=_user("ann"))
    resp = await api.public.post(f"/v1/claims/{claim}/transfer", headers=_user("mallory"))
    assert (await _error(resp))[:2] == (404, "not_found")  # nobody transfers another's
    resp = await api.public.post(f"/v1/claims/{claim}/transfer", headers=_user("ann"))
    assert resp.status == 201
    offer = await resp.json()
    assert offer["claim_id"] == claim and offer["transfer_token"].startswith("gig.")
    resp = await api.public.post("/v1/transfers/accept", headers=_user("bob"),
                                 json={"transfer_token": offer["transfer_token"]})
    assert resp.status == 200, await resp.text()
    new = await resp.json()
    assert new["status"] == "confirmed" and new["claim_id"] != claim
    old = await (await api.public.get(f"/v1/claims/{claim}", headers=_user("ann"))).json()
    assert old["status"] == "transferred"
    resp = await api.public.post("/v1/transfers/accept", headers=_user("cat"),
                                 json={"transfer_token": offer["transfer_token"]})
    assert await _error(resp) == (409, "conflict", "this transfer token has been used")
    for bad in ({}, {"transfer_token": ""}, {"token": "x"}):
        resp = await api.public.post("/v1/transfers/accept", headers=_user("bob"), json=bad)
        assert (await _error(resp))[:2] == (400, "invalid_request"), bad
    resp = await api.public.post("/v1/transfers/accept", headers=_user("bob"),
                                 json={"transfer_token": "nope"})
    assert await _error(resp) == (404, "not_found", "no such transfer token")
