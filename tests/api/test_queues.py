"""The waitlist and waiting-room routes over HTTP."""

from typing import Any

from tests.api.conftest import Api

ALWAYS = {"opens_at": "2026-01-01T00:00:00Z", "closes_at": "2099-01-01T00:00:00Z"}


def _spec(**extra: Any) -> dict[str, Any]:
    return {"name": "Drop", **ALWAYS, "hold_ttl_s": 600, "limits": {"per_user": 2},
            "skus": [{"sku": "tee", "price": 1999,
                      "waves": [{"at": "2026-01-01T00:00:00Z", "qty": 1}]}], **extra}


def _user(name: str) -> dict[str, str]:
    return {"X-User-Id": name}


async def _create(api: Api, cid: str, spec: dict[str, Any]) -> None:
    resp = await api.admin.put(f"/admin/v1/campaigns/{cid}", json=spec, headers=api.op())
    assert resp.status == 201, await resp.text()


async def test_waitlist_flow(api: Api) -> None:
    await _create(api, "drop", _spec(waitlist={"max_length": 2, "offer_ttl_s": 120}))
    url = "/v1/campaigns/drop/waitlist"
    resp = await api.public.post(url, json={"sku": "tee"}, headers=_user("early"))
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "conflict"
    assert "not sold out" in body["error"]["message"]
    resp = await api.public.post("/v1/campaigns/drop/claims", json={"sku": "tee"},
                                 headers=_user("holder"))
    claim_id = (await resp.json())["claim_id"]
    for i, user in enumerate(("a", "b")):
        resp = await api.public.post(url, json={"sku": "tee"}, headers=_user(user))
        assert resp.status == 201
        entry = await resp.json()
        assert (entry["status"], entry["position"], entry["offer"]) == ("waiting", i + 1, None)
    resp = await api.public.post(url, json={"sku": "tee"}, headers=_user("a"))
    assert resp.status == 200  # one entry per user and SKU
    resp = await api.public.post(url, json={"sku": "tee"}, headers=_user("c"))
    body = await resp.json()
    assert resp.status == 409 and body["error"] == {
        "code": "conflict",
        "message": "the waitlist of SKU 'tee' in campaign 'drop' is full (2 waiting)"}
    stats = await (await api.admin.get("/admin/v1/campaigns/drop/stats",
                                       headers=api.viewer())).json()
    assert stats["waitlist"] == 2
    await api.public.post(f"/v1/claims/{claim_id}/cancel", headers=_user("holder"))
    resp = await api.public.get(url, headers=_user("a"))
    [entry] = (await resp.json())["entries"]
    assert entry["status"] == "offered" and entry["position"] is None
    offer = entry["offer"]
    assert offer["status"] == "held" and offer["offer"] is True
    resp = await api.public.get(f"/v1/claims/{offer['claim_id']}", headers=_user("a"))
    assert resp.status == 200 and (await resp.json())["offer"] is True
    resp = await api.public.post(f"/v1/claims/{offer['claim_id']}/confirm", headers=_user("a"))
    assert resp.status == 200 and (await resp.json())["status"] == "confirmed"
    resp = await api.public.get(f"{url}?sku=tee", headers=_user("b"))
    [entry] = (await resp.json())["entries"]
    assert entry["position"] == 1
    resp = await api.public.delete(url, headers=_user("b"))
    assert resp.status == 400
    resp = await api.public.delete(f"{url}?sku=tee", headers=_user("b"))
    assert resp.status == 200 and (await resp.json())["status"] == "left"
    resp = await api.public.delete(f"{url}?sku=tee", headers=_user("b"))
    assert resp.status == 404


async def test_waitlist_needs_a_waitlist(api: Api) -> None:
    await _create(api, "plain", _spec())
    resp = await api.public.post("/v1/campaigns/plain/waitlist", json={"sku": "tee"},
                                 headers=_user("a"))
    assert resp.status == 404
    resp = await api.public.post("/v1/campaigns/plain/queue", headers=_user("a"))
    assert resp.status == 404


async def test_waiting_room_flow(api: Api) -> None:
    room = {"rate_per_s": 1000, "burst": 100, "max_active": 100}
    await _create(api, "room", _spec(waiting_room=room, waitlist={}))
    resp = await api.public.post("/v1/campaigns/room/claims", json={"sku": "tee"},
                                 headers=_user("a"))
    body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "admission_required"
    resp = await api.public.get("/v1/campaigns/room/queue/me", headers=_user("a"))
    assert resp.status == 404
    resp = await api.public.post("/v1/campaigns/room/queue", headers=_user("a"))
    assert resp.status == 201
    ticket = await resp.json()
    assert ticket["position"] == 1 and ticket["status"] == "admitted"
    assert (await api.public.post("/v1/campaigns/room/queue", headers=_user("a"))).status == 200
    resp = await api.public.get("/v1/campaigns/room/queue/me", headers=_user("a"))
    token = (await resp.json())["admission_token"]
    resp = await api.public.post("/v1/campaigns/room/claims", json={"sku": "tee"},
                                 headers={**_user("b"), "X-Admission-Token": token})
    assert resp.status == 403  # a's token is not b's
    resp = await api.public.post("/v1/campaigns/room/claims", json={"sku": "tee"},
                                 headers={**_user("a"), "X-Admission-Token": token})
    assert resp.status == 201
    # the waitlist of a waiting-room sale also wants an admission
    resp = await api.public.post("/v1/campaigns/room/waitlist", json={"sku": "tee"},
                                 headers=_user("b"))
    assert resp.status == 403
    resp = await api.admin.patch("/admin/v1/campaigns/room", headers=api.op(),
                                 json={"waiting_room": {"rate_per_s": 2.5, "paused": True}})
    assert resp.status == 200, await resp.text()
    room_stats = (await resp.json())["waiting_room"]
    assert room_stats["rate_per_s"] == 2.5 and room_stats["paused"] is True
    assert room_stats["tickets"] == 1 and room_stats["served"] == 1
    resp = await api.admin.patch("/admin/v1/campaigns/room", headers=api.op(),
                                 json={"waiting_room": {"rate_per_s": 0}})
    assert resp.status == 400


async def test_waiting_room_on_a_sharded_campaign(api: Api) -> None:
    """One queue (shard 0's); a claim on any shard needs its user's token, once."""
    from stampede.domain.shards import shard_of_user

    room = {"rate_per_s": 1000, "burst": 100, "max_active": 100}
    spec = _spec(waiting_room=room, shards=2)
    spec["skus"][0]["waves"][0]["qty"] = 10
    await _create(api, "split", spec)
    a, b = (next(u for u in (f"u{i}" for i in range(100)) if shard_of_user(u, 2) == k)
            for k in (1, 0))
    tokens = {}
    for place, user in enumerate((a, b), 1):
        resp = await api.public.post("/v1/campaigns/split/queue", headers=_user(user))
        ticket = await resp.json()
        assert resp.status == 201 and ticket["position"] == place  # one line for both
        assert ticket["status"] == "admitted"
        tokens[user] = ticket["admission_token"]
    url = "/v1/campaigns/split/claims"
    resp = await api.public.post(url, json={"sku": "tee"}, headers=_user(a))
    body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "admission_required"
    resp = await api.public.post(url, json={"sku": "tee"},
                                 headers={**_user(a), "X-Admission-Token": tokens[b]})
    assert resp.status == 403  # b's token is not a's
    for user in (a, b):  # each on their own shard, each once
        headers = {**_user(user), "X-Admission-Token": tokens[user]}
        resp = await api.public.post(url, json={"sku": "tee"}, headers=headers)
        assert resp.status == 201, await resp.text()
        resp = await api.public.post(url, json={"sku": "tee"}, headers=headers)
        assert resp.status == 403  # the turn is used
        me = await (await api.public.get("/v1/campaigns/split/queue/me",
                                         headers=_user(user))).json()
        assert me["status"] == "done"
    resp = await api.admin.patch("/admin/v1/campaigns/split", headers=api.op(),
                                 json={"waiting_room": {"rate_per_s": 2.5, "paused": True}})
    assert resp.status == 200, await resp.text()
    room_stats = (await resp.json())["waiting_room"]
    assert room_stats == {"tickets": 2, "served": 2, "active": 0, "rate_per_s": 2.5,
                          "paused": True}
