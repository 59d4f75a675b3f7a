"""Ticket routes over HTTP: holders' tickets, scanners' check-ins, BOLA and bad input."""

from typing import Any

import msgspec

from tests.aftersale.test_refunds_api import SPEC, _error, _user
from tests.api.conftest import Api
from tests.coupons.helpers import FIVE_OFF, drop_spec

TICKETED = {**SPEC, "tickets": {"venue": "arena"}}


async def _scanner(api: Api, sid: str, venue: str, gate: str) -> dict[str, str]:
    resp = await api.admin.put(f"/admin/v1/scanners/{sid}", json={"venue": venue, "gate": gate},
                               headers=api.op())
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["scanner_id"] == sid and body["venue"] == venue and body["gate"] == gate
    return {"Authorization": f"Bearer {body['token']}"}


async def _buy(api: Api, cid: str, user: str, qty: int, spec: dict[str, Any]) -> str:
    await api.admin.put(f"/admin/v1/campaigns/{cid}", json=spec, headers=api.op())
    resp = await api.public.post(f"/v1/campaigns/{cid}/claims", json={"sku": "ga", "qty": qty},
                                 headers=_user(user))
    claim_id: str = (await resp.json())["claim_id"]
    assert (await api.public.post(f"/v1/claims/{claim_id}/confirm",
                                  headers=_user(user))).status == 200
    return claim_id


async def _tickets(api: Api, cid: str, user: str) -> list[dict[str, Any]]:
    resp = await api.public.get(f"/v1/me/tickets?campaign={cid}", headers=_user(user))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    tickets: list[dict[str, Any]] = (await resp.json())["tickets"]
    return tickets


async def test_holder_shows_a_code_and_the_door_admits_it_once(api: Api) -> None:
    claim = await _buy(api, "gig", "ann", 2, TICKETED)
    north = await _scanner(api, "north-1", "arena", "north")
    south = await _scanner(api, "south-1", "arena", "south")
    tickets = await _tickets(api, "gig", "ann")
    assert [t["ticket_id"] for t in tickets] == [f"{claim}-1", f"{claim}-2"]
    assert all(t["status"] == "valid" and t["code"] and t["code_expires_at"] for t in tickets)
    assert await _tickets(api, "gig", "bob") == []  # nobody reads another's tickets
    code = tickets[0]["code"]
    resp = await api.public.post("/v1/checkins", json={"code": code}, headers=north)
    first = await resp.json()
    assert resp.status == 200 and first["verdict"] == "admitted" and first["gate"] == "north"
    resp = await api.public.post("/v1/checkins", json={"code": code}, headers=south)
    again = await resp.json()
    assert (again["verdict"], again["gate"], again["at"]) == ("checked_in", "north",
                                                              first["at"])
    resp = await api.public.post("/v1/checkins/batch", headers=south, json={"scans": [
        {"code": tickets[1]["code"]}, {"code": tickets[1]["code"]}, {"code": "junk"}]})
    assert [r["verdict"] for r in (await resp.json())["results"]] == [
        "admitted", "checked_in", "bad_code"]
    stats = await (await api.admin.get("/admin/v1/campaigns/gig/stats",
                                       headers=api.viewer())).json()
    assert stats["checkins"] == {"north": 1, "south": 1}
    after = await _tickets(api, "gig", "ann")
    assert [(t["status"], t["gate"], t["code"]) for t in after] == [
        ("checked_in", "north", None), ("checked_in", "south", None)]


async def test_a_scanner_of_another_venue_admits_nothing(api: Api) -> None:
    await _buy(api, "gig", "ann", 1, TICKETED)
    other = await _scanner(api, "stadium-1", "stadium", "east")
    code = (await _tickets(api, "gig", "ann"))[0]["code"]
    resp = await api.public.post("/v1/checkins", json={"code": code}, headers=other)
    assert (await resp.json())["verdict"] == "wrong_venue"
    home = await _scanner(api, "north-1", "arena", "north")
    resp = await api.public.post("/v1/checkins", json={"code": code}, headers=home)
    assert (await resp.json())["verdict"] == "admitted"


async def test_scanner_auth_and_revocation(api: Api) -> None:
    north = await _scanner(api, "north-1", "arena", "north")
    for headers in ({}, {"Authorization": "Bearer north-1.wrong"}, api.op(), _user("ann")):
        resp = await api.public.post("/v1/checkins", json={"code": "x"}, headers=headers)
        status, code, _ = await _error(resp)
        assert status == 401 and code == "unauthorized" and "WWW-Authenticate" in resp.headers
    assert (await api.admin.delete("/admin/v1/scanners/north-1", headers=api.op())).status == 204
    resp = await api.public.post("/v1/checkins", json={"code": "x"}, headers=north)
    assert resp.status == 401
    resp = await api.admin.delete("/admin/v1/scanners/north-1", headers=api.op())
    assert await _error(resp) == (404, "not_found", "no scanner 'north-1'")
    resp = await api.admin.put("/admin/v1/scanners/s1", json={"venue": "arena", "gate": "g"},
                               headers=api.viewer())
    assert resp.status == 403


async def test_bad_input_is_a_400_naming_the_limit(api: Api) -> None:
    north = await _scanner(api, "north-1", "arena", "north")
    for body in ({}, {"code": ""}, {"code": "x" * 201}, {"code": "x", "gate": "g"},
                 {"code": "x", "scanned_at": "yesterday"}):
        resp = await api.public.post("/v1/checkins", json=body, headers=north)
        assert (await _error(resp))[:2] == (400, "invalid_request"), body
    resp = await api.public.post("/v1/checkins/batch", json={"scans": []}, headers=north)
    assert (await _error(resp))[:2] == (400, "invalid_request")
    resp = await api.public.post("/v1/checkins", headers=north, json={
        "code": "x", "scanned_at": "2001-01-01T00:00:00Z"})
    status, _, message = await _error(resp)
    assert status == 400 and "within the last 7 days" in message
    for bad in ({"venue": "Arena!", "gate": "g"}, {"venue": "arena"}, {"gate": "g"}):
        resp = await api.admin.put("/admin/v1/scanners/s1", json=bad, headers=api.op())
        assert resp.status == 400, bad
    resp = await api.public.get("/v1/me/tickets", headers=_user("ann"))
    assert resp.status == 400
    resp = await api.public.get("/v1/me/tickets?campaign=nope", headers=_user("ann"))
    assert await _error(resp) == (404, "not_found", "campaign 'nope' issues no tickets")
    drop = msgspec.to_builtins(drop_spec(skus=("ga",), templates={"ga": FIVE_OFF}))
    resp = await api.admin.put("/admin/v1/campaigns/drop", headers=api.op(), json=drop)
    assert resp.status == 201, await resp.text()  # the drop itself is valid
    resp = await api.admin.put("/admin/v1/campaigns/drop2", headers=api.op(),
                               json={**drop, "tickets": {"venue": "arena"}})
    assert await _error(resp) == (400, "invalid_request", "a coupon drop cannot issue tickets")
