"""Presales: a claim's channel from a channel API key (X-Channel-Key, STAMPEDE_CHANNEL_KEYS)
over HTTP against a real Valkey: the key's channel takes that channel's allocation; an
unknown key is 403 invalid_channel_key and a token of another channel 403
channel_mismatch naming both, nothing taken."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stampede import Engine
from stampede.api.app import make_admin_app, make_public_app
from stampede.api.auth import Authenticator, mint_user_token, parse_admin_tokens
from stampede.api.channel_keys import parse_channel_keys
from stampede.errors import ConfigError
from stampede.runtime.credentials import authenticator
from stampede.settings import Settings
from stampede.state import keys
from tests.api.conftest import JWT_SECRET, OPERATOR
from tests.conftest import iso

PARTNER_KEY = "pk-partner-0123456789abcdef"
BOX_KEY = "pk-box-office-0123456789abcdef"


@pytest.fixture
async def clients(engine: Engine) -> AsyncIterator[tuple[TestClient, TestClient]]:
    auth = Authenticator(JWT_SECRET, True, tuple(parse_admin_tokens(f"operator:{OPERATOR}")),
                         channel_keys=parse_channel_keys(
                             f"partner={PARTNER_KEY}, box={BOX_KEY}"))
    ready = {"draining": False}
    public = TestClient(TestServer(make_public_app(engine, auth, ready)))
    admin = TestClient(TestServer(make_admin_app(engine, auth, ready)))
    await public.start_server()
    await admin.start_server()
    spec = {"name": "Concert", "opens_at": iso(-60), "closes_at": iso(3600),
            "limits": {"max_per_claim": 10},
            "skus": [{"sku": "ticket", "price": 5000, "allocations": [
                {"name": "partner", "qty": 4, "channels": ["partner"]},
                {"name": "app", "qty": 3, "channels": ["app"]}],
                "waves": [{"at": iso(-60), "qty": 8}]}]}  # 1 shared
    resp = await admin.put("/admin/v1/campaigns/gig", json=spec,
                           headers={"Authorization": f"Bearer {OPERATOR}"})
    assert resp.status == 201, await resp.text()
    try:
        yield public, admin
    finally:
        await public.close()
        await admin.close()


async def _claim(public: TestClient, headers: dict[str, str], qty: int) -> tuple[int, Any]:
    resp = await public.post("/v1/campaigns/gig/claims", json={"sku": "ticket", "qty": qty},
                             headers=headers)
    return resp.status, await resp.json()


async def _reserved(engine: Engine) -> list[int]:
    raw = await engine.redis.hmget(keys.campaign_keys("gig").meta,
                                   ["al:ticket:partner", "al:ticket:app"])
    return [int(v) for v in raw]


def _bearer(user: str, channel: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_user_token(JWT_SECRET, user, channel=channel)}"}


async def test_a_channel_key_sets_the_claims_channel(
        engine: Engine, clients: tuple[TestClient, TestClient]) -> None:
    public, _ = clients
    # no channel: the shared unit only
    assert (await _claim(public, _bearer("u0"), 2))[1]["error"]["code"] == "sold_out"
    status, body = await _claim(public, {**_bearer("u1"), "X-Channel-Key": PARTNER_KEY}, 5)
    assert status == 201, body  # partner's 4 + the shared 1
    assert await _reserved(engine) == [0, 3]
    # the box office's key is good but box has no allocation: nothing left for it
    status, body = await _claim(public, {"X-User-Id": "u2", "X-Channel-Key": BOX_KEY}, 1)
    assert (status, body["error"]["code"]) == (409, "sold_out"), body
    # a key that is none of ours
    status, body = await _claim(public, {**_bearer("u3", "app"), "X-Channel-Key": "x" * 20}, 1)
    assert (status, body["error"]["code"]) == (403, "invalid_channel_key"), body
    assert "X-Channel-Key" in body["error"]["message"]
    assert await _reserved(engine) == [0, 3]


async def test_a_key_of_another_channel_than_the_token_is_refused(
        engine: Engine, clients: tuple[TestClient, TestClient]) -> None:
    public, _ = clients
    status, body = await _claim(public, {**_bearer("u1", "app"),
                                         "X-Channel-Key": PARTNER_KEY}, 2)
    assert (status, body["error"]["code"]) == (403, "channel_mismatch"), body
    assert "'partner'" in body["error"]["message"] and "'app'" in body["error"]["message"]
    status, body = await _claim(public, {"X-User-Id": "u2", "X-Channel": "app",
                                         "X-Channel-Key": PARTNER_KEY}, 2)
    assert (status, body["error"]["code"]) == (403, "channel_mismatch"), body
    assert await _reserved(engine) == [4, 3]  # nothing taken
    # a token of the key's own channel is fine
    status, body = await _claim(public, {**_bearer("u3", "partner"),
                                         "X-Channel-Key": PARTNER_KEY}, 3)
    assert status == 201, body
    assert await _reserved(engine) == [1, 3]
    # a claim of lines (a bundle) is made through the key's channel too
    resp = await public.post("/v1/campaigns/gig/claims",
                             json={"lines": [{"sku": "ticket", "qty": 1}]},
                             headers={**_bearer("u4"), "X-Channel-Key": PARTNER_KEY})
    assert resp.status == 201, await resp.text()
    assert await _reserved(engine) == [0, 3]


def test_bad_channel_keys_are_refused_at_start() -> None:
    for spec, says in (("partner", "at least 16"), ("partner=short", "at least 16"),
                       ("bad name=0123456789abcdef", "channel"),
                       (f"a={PARTNER_KEY},b={PARTNER_KEY}", "repeats a key")):
        with pytest.raises(ConfigError, match=says):
            parse_channel_keys(spec)
    settings = Settings.from_env({"STAMPEDE_CHANNEL_KEYS": f"box={BOX_KEY}",
                                  "STAMPEDE_JWT_SECRET": JWT_SECRET,
                                  "STAMPEDE_ADMIN_TOKENS": f"operator:{OPERATOR}"})
    found = authenticator(settings).channel_keys
    assert [k.channel for k in found] == ["box"]
    assert BOX_KEY.encode() not in repr(found).encode()  # kept as digests only
