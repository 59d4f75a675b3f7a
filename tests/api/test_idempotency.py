"""Idempotency-Key at the edge: replay, mismatch, in-flight, and a lost reply."""

import asyncio
import socket

from tests.api.conftest import Api
from tests.api.test_api import _create, _user


async def _claim(api: Api, user: str, key: str, body: dict[str, object]) -> tuple[int, dict]:
    resp = await api.public.post("/v1/campaigns/launch/claims", json=body,
                                 headers={**_user(user), "Idempotency-Key": key})
    return resp.status, await resp.json()


async def test_replayed_confirm_returns_the_first_answer(api: Api) -> None:
    await _create(api)
    _, claim = await _claim(api, "alice", "c-1", {"sku": "tee-black-m"})
    path = f"/v1/claims/{claim['claim_id']}"
    headers = {**_user("alice"), "Idempotency-Key": "pay-1"}
    first = await api.public.post(f"{path}/confirm", headers=headers)
    again = await api.public.post(f"{path}/confirm", headers=headers)
    assert first.status == again.status == 200
    assert await first.read() == await again.read()
    other = await api.public.post(f"{path}/cancel", headers=headers)
    assert (other.status, (await other.json())["error"]["code"]) == (422, "idempotency_mismatch")
    # Keys are per user: bob's "pay-1" is his own (and alice's claim is not his).
    bob = await api.public.post(f"{path}/cancel", headers={**_user("bob"),
                                                            "Idempotency-Key": "pay-1"})
    assert bob.status == 404


async def test_in_flight_retry_gets_409(api: Api) -> None:
    await _create(api)
    guard_entered = asyncio.Event()
    release = asyncio.Event()
    real_claim = api.engine.claim

    async def slow_claim(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        guard_entered.set()
        await release.wait()
        return await real_claim(*args, **kwargs)  # type: ignore[arg-type]

    api.engine.claim = slow_claim  # type: ignore[method-assign]
    try:
        first = asyncio.create_task(_claim(api, "alice", "k", {"sku": "tee-black-m"}))
        await guard_entered.wait()
        status, body = await _claim(api, "alice", "k", {"sku": "tee-black-m"})
        assert (status, body["error"]["code"]) == (409, "conflict")
        release.set()
        assert (await first)[0] == 201
    finally:
        api.engine.claim = real_claim  # type: ignore[method-assign]
    status, _ = await _claim(api, "alice", "k", {"sku": "tee-black-m"})
    assert status == 201


async def test_retry_after_a_lost_reply_never_claims_twice(api: Api) -> None:
    await _create(api)
    # Send the request on a raw socket and hang up before the answer comes.
    body = b'{"sku": "tee-black-m"}'
    request = (b"POST /v1/campaigns/launch/claims HTTP/1.1\r\nHost: x\r\n"
               b"X-User-Id: alice\r\nIdempotency-Key: lost-1\r\n"
               b"Content-Type: application/json\r\n"
               + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    server = api.public.server
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(request)
    # The engine got it: wait until the hold exists, then retry.
    for _ in range(100):
        stats = await api.engine.stats("launch")
        if stats and stats.skus[0].held:
            break
        await asyncio.sleep(0.02)
    statuses = [await _claim(api, "alice", "lost-1", {"sku": "tee-black-m"}) for _ in range(3)]
    assert {s for s, _ in statuses} == {201}
    assert len({b["claim_id"] for _, b in statuses}) == 1
    stats = await api.engine.stats("launch")
    assert stats and stats.skus[0].held == 1 and stats.claims_by_outcome["held"] == 1


async def test_idempotent_claims_race_from_many_connections(api: Api) -> None:
    """The same key fired in parallel: one hold, every answer 201 or 409 in flight."""
    await _create(api)
    results = await asyncio.gather(*(_claim(api, "alice", "rush", {"sku": "tee-black-m"})
                                     for _ in range(20)))
    ok = [b["claim_id"] for s, b in results if s == 201]
    assert ok and len(set(ok)) == 1
    assert all(s in (201, 409) for s, _ in results)
    stats = await api.engine.stats("launch")
    assert stats and stats.skus[0].held == 1


async def test_bad_idempotency_key_is_refused(api: Api) -> None:
    await _create(api)
    status, body = await _claim(api, "alice", "x" * 300, {"sku": "tee-black-m"})
    assert (status, body["error"]["code"]) == (400, "invalid_request")
