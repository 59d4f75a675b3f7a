"""One ticket transferred out of a multi-ticket claim, against a real Valkey and over
HTTP: the other tickets stay with the holder, the moved ticket's old code dies, the
recipient gets a claim of that one unit, history kept; racing accepts give it once."""

import asyncio

from stampede import Engine, Outcome, Settings
from stampede.domain.tickets import Scan
from stampede.state import keys
from tests.aftersale.helpers import bought, check_refund_invariants, refund
from tests.aftersale.test_refunds_api import SPEC, _error, _user
from tests.aftersale.test_tickets import NORTH, _codes
from tests.aftersale.test_transfers import transferable
from tests.api.conftest import Api
from tests.domain.test_concurrency import _clone


async def _give_ticket(engine: Engine, claim: str, unit: int, giver: str,
                       token: str = "") -> str:
    token = token or f"gig.{'ab' * 16}"
    offer = await engine.transfers.offer(claim, giver, token, unit)
    assert offer.outcome is Outcome.OK and offer.offer is not None, offer
    assert offer.offer.ticket_id == f"{claim}-{unit}"
    return token


async def test_one_ticket_moves_and_the_others_stay(engine: Engine) -> None:
    await engine.define_campaign("gig", transferable(per_user=None))
    claim = await bought(engine, "gig", "ann", 3)
    before = await _codes(engine, "gig", "ann")
    token = await _give_ticket(engine, claim, 2, "ann")
    taken = await engine.transfers.accept(token, "bob")
    assert taken.outcome is Outcome.OK and taken.new_claim_id
    new = taken.new_claim_id
    old_view = await engine.get_claim(claim, "ann")
    assert old_view is not None and (old_view.status, old_view.qty) == ("confirmed", 3)
    mine = {t.ticket_id: t for t in await engine.tickets.mine("gig", "ann") or []}
    assert [(i, t.status) for i, t in sorted(mine.items())] == [
        (f"{claim}-1", "valid"), (f"{claim}-2", "transferred"), (f"{claim}-3", "valid")]
    assert mine[f"{claim}-2"].code is None  # history kept, no code
    new_view = await engine.get_claim(new, "bob")
    assert new_view is not None and (new_view.status, new_view.qty) == ("confirmed", 1)
    bob = await _codes(engine, "gig", "bob")
    assert list(bob) == [f"{new}-1"]
    verdicts = await engine.tickets.check_in(NORTH, [
        Scan(code=before[f"{claim}-2"] or ""),  # the moved ticket's old code: dead
        Scan(code=before[f"{claim}-1"] or ""),  # the others still admit
        Scan(code=bob[f"{new}-1"] or "")])
    assert [v.verdict for v in verdicts] == ["not_found", "admitted", "admitted"]
    users = await engine.redis.hgetall(keys.campaign_keys("gig").users)
    assert (users["ann"], users["bob"]) == ("tee:2", "tee:1")  # units by SKU
    # The same ticket cannot go twice, nor be refunded by the old claim; the claim
    # refunds the one left that is neither checked in nor moved.
    again = await engine.transfers.offer(claim, "ann", "gig." + "cd" * 16, 2)
    assert (again.outcome, again.reason) == (Outcome.CONFLICT, "ticket_not_valid")
    over = await refund(engine, claim)  # 1 checked in, 1 moved: one left to refund
    assert (over.reason, over.params) == ("refund_exceeds", {"available": 1})
    done = await refund(engine, claim, qty=1)
    assert done.outcome is Outcome.OK and done.view and done.view.refunded == 1
    assert (await engine.get_claim(claim, "ann")).status == "confirmed"  # type: ignore[union-attr]
    await check_refund_invariants(engine, "gig")


async def test_refused_one_ticket_transfers(engine: Engine) -> None:
    await engine.define_campaign("gig", transferable(per_user=None))
    claim = await bought(engine, "gig", "ann", 2)
    for user, unit, reason in (("bob", 1, "no_sale_ticket"),  # another's ticket: as unknown
                               ("ann", 3, "no_sale_ticket")):  # past the claim's units
        result = await engine.transfers.offer(claim, user, "gig." + "00" * 16, unit)
        assert (result.outcome, result.reason) == (Outcome.NOT_FOUND, reason)
    codes = await _codes(engine, "gig", "ann")
    await engine.tickets.check_in(NORTH, [Scan(code=codes[f"{claim}-1"] or "")])
    result = await engine.transfers.offer(claim, "ann", "gig." + "00" * 16, 1)
    assert result.reason == "transfer_checked_in"
    # offered, then refunded before it is accepted: the token is stale
    token = await _give_ticket(engine, claim, 2, "ann")
    assert (await refund(engine, claim, qty=1)).outcome is Outcome.OK
    assert (await engine.transfers.accept(token, "bob")).reason == "transfer_stale"
    # a whole-claim transfer with every ticket moved or refunded has nothing to move
    other = await bought(engine, "gig", "cat", 1)
    t1 = await _give_ticket(engine, other, 1, "cat", "gig." + "11" * 16)
    whole = await engine.transfers.offer(other, "cat", "gig." + "22" * 16)
    assert (await engine.transfers.accept(t1, "dan")).outcome is Outcome.OK
    assert (await engine.transfers.accept("gig." + "22" * 16, "eve")).reason == \
        "transfer_stale"
    assert whole.outcome is Outcome.OK
    assert (await refund(engine, other)).reason == "refund_exceeds"
    await check_refund_invariants(engine, "gig")


async def test_two_offers_of_one_ticket_accepted_at_once_move_it_once(
        engine: Engine, settings: Settings) -> None:
    """Ann offers her first ticket twice and the whole claim once; 30 recipients race on the
    three tokens: the ticket moves once, and the claim's rest at most once."""
    await engine.define_campaign("gig", transferable(per_user=None))
    claim = await bought(engine, "gig", "ann", 2)
    tokens = [await _give_ticket(engine, claim, 1, "ann", f"gig.{d * 16}") for d in "ab"]
    whole = "gig." + "cc" * 16
    assert (await engine.transfers.offer(claim, "ann", whole)).outcome is Outcome.OK
    tokens.append(whole)
    engines = [engine] + [await _clone(engine, settings) for _ in range(2)]
    try:
        results = await asyncio.gather(*(engines[i % 3].transfers.accept(tokens[i % 3], f"r{i}")
                                         for i in range(30)))
    finally:
        for other in engines[1:]:
            await other.close()
    won = [r for r in results if r.outcome is Outcome.OK]
    views = [await engine.get_claim(r.new_claim_id or "", f"r{i}")
             for i, r in enumerate(results) if r.outcome is Outcome.OK]
    moved = sum(v.qty for v in views if v is not None)
    assert moved == 2 and 1 <= len(won) <= 2  # every unit once: never 3
    users = await engine.redis.hgetall(keys.campaign_keys("gig").users)
    assert "ann" not in users  # no units left: the field goes
    await check_refund_invariants(engine, "gig")


async def test_one_ticket_transfer_over_http(api: Api) -> None:
    spec = {**SPEC, "tickets": {"venue": "arena"}, "transfers": {"offer_ttl_s": 600}}
    await api.admin.put("/admin/v1/campaigns/gig", json=spec, headers=api.op())
    resp = await api.public.post("/v1/campaigns/gig/claims", json={"sku": "ga", "qty": 2},
                                 headers=_user("ann"))
    claim = (await resp.json())["claim_id"]
    await api.public.post(f"/v1/claims/{claim}/confirm", headers=_user("ann"))
    resp = await api.public.post(f"/v1/tickets/{claim}-2/transfer", headers=_user("mallory"))
    assert await _error(resp) == (404, "not_found", f"no such ticket '{claim}-2'")
    for bad in (f"{claim}-0", f"{claim}", "x-1"):
        resp = await api.public.post(f"/v1/tickets/{bad}/transfer", headers=_user("ann"))
        assert (await _error(resp))[:2] == (400, "invalid_request"), bad
    resp = await api.public.post(f"/v1/tickets/{claim}-2/transfer", headers=_user("ann"))
    assert resp.status == 201, await resp.text()
    offer = await resp.json()
    assert offer["ticket_id"] == f"{claim}-2" and offer["claim_id"] == claim
    resp = await api.public.post("/v1/transfers/accept", headers=_user("bob"),
                                 json={"transfer_token": offer["transfer_token"]})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["qty"] == 1
    resp = await api.public.get("/v1/me/tickets?campaign=gig", headers=_user("ann"))
    statuses = [t["status"] for t in (await resp.json())["tickets"]]
    assert statuses == ["valid", "transferred"]
    resp = await api.public.post(f"/v1/tickets/{claim}-2/transfer", headers=_user("ann"))
    assert (await _error(resp))[:2] == (409, "conflict")
