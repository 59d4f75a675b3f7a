"""Route declarations are enforced: patterns and auth are checked before the handler runs."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stampede.api.auth import Authenticator, parse_admin_tokens
from stampede.api.context import ADMIN, AUTH, USER
from stampede.api.errors import error_middleware, json_response
from stampede.api.hs256 import Hs256
from stampede.api.routing import ApiRoutes
from tests.api.conftest import JWT_SECRET, OPERATOR, VIEWER, Api
from tests.coupons.helpers import FIVE_OFF, drop_spec

CID = {"cid": r"^[a-z0-9][a-z0-9_-]{0,63}$"}


class Probe:
    """A route table whose handlers only record that they ran, and who called."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.routes = ApiRoutes("probe")
        route = self.routes.route

        @route("GET", "/v1/things/{cid}", "user route", auth="user", path_params=CID,
               query_params={"kind": (r"^[a-z]{1,8}$", False)})
        async def user_thing(request: web.Request) -> web.Response:
            self.calls.append(request[USER].id)
            return json_response({"user": request[USER].id})

        @route("PUT", "/admin/things/{cid}", "operator route", auth="operator",
               path_params=CID)
        async def operator_thing(request: web.Request) -> web.Response:
            self.calls.append(request[ADMIN].name)
            return json_response({"admin": request[ADMIN].name})

        @route("GET", "/admin/things", "viewer route", auth="viewer",
               query_params={"page": (r"^[0-9]{1,4}$", True)})
        async def viewer_things(request: web.Request) -> web.Response:
            self.calls.append(request[ADMIN].name)
            return json_response({"admin": request[ADMIN].name})


@pytest.fixture
async def probe() -> AsyncIterator[tuple[Probe, TestClient]]:
    found = Probe()
    app = web.Application(middlewares=[error_middleware])
    app[AUTH] = Authenticator(JWT_SECRET, False, tuple(parse_admin_tokens(
        f"operator:{OPERATOR},viewer:{VIEWER}")))
    found.routes.add_to(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield found, client
    finally:
        await client.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(sub: str, **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600, **claims}, JWT_SECRET,
                      algorithm="HS256")


async def _error(resp: Any) -> tuple[int, str]:
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"code", "message"}
    return resp.status, body["error"]["code"]


async def test_unauthenticated_user_route_is_401_before_the_handler(
        probe: tuple[Probe, TestClient]) -> None:
    found, client = probe
    for headers in ({}, _bearer("garbage"), {"Authorization": "Basic x"},
                    _bearer(jwt.encode({"sub": "bob"}, "another-secret-0123456789-0123456789",
                                       algorithm="HS256"))):
        assert await _error(await client.get("/v1/things/c1", headers=headers)) \
            == (401, "unauthorized")
    assert found.calls == []
    resp = await client.get("/v1/things/c1", headers=_bearer(_token("alice")))
    assert (resp.status, await resp.json()) == (200, {"user": "alice"})
    assert found.calls == ["alice"]


async def test_wrong_role_is_403_and_no_token_401(probe: tuple[Probe, TestClient]) -> None:
    found, client = probe
    assert await _error(await client.put("/admin/things/c1", headers=_bearer(VIEWER))) \
        == (403, "forbidden")
    assert await _error(await client.put("/admin/things/c1", headers=_bearer(_token("al")))) \
        == (401, "unauthorized")  # a user token is no admin token
    assert found.calls == []
    assert (await client.put("/admin/things/c1", headers=_bearer(OPERATOR))).status == 200
    assert (await client.get("/admin/things?page=1", headers=_bearer(VIEWER))).status == 200
    assert found.calls == ["operator-0", "viewer-1"]


@pytest.mark.parametrize("path", ["/v1/things/UPPER", "/v1/things/a%20b", "/v1/things/-x",
                                  "/v1/things/" + "a" * 65, "/v1/things/ok%0A"])
async def test_path_param_off_its_pattern_is_400(probe: tuple[Probe, TestClient],
                                                 path: str) -> None:
    found, client = probe
    resp = await client.get(path, headers=_bearer(_token("alice")))
    assert await _error(resp) == (400, "invalid_request")
    assert found.calls == []


async def test_query_params_follow_their_declaration(probe: tuple[Probe, TestClient]) -> None:
    found, client = probe
    user = _bearer(_token("alice"))
    assert await _error(await client.get("/v1/things/c1?kind=BAD", headers=user)) \
        == (400, "invalid_request")
    assert await _error(await client.get("/admin/things", headers=_bearer(VIEWER))) \
        == (400, "invalid_request")  # required
    assert found.calls == []
    assert (await client.get("/v1/things/c1?kind=good", headers=user)).status == 200


async def _raw(client: TestClient, request: bytes) -> tuple[int, bytes]:
    """Send bytes aiohttp's client would refuse to; the status and body of the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(head.split(b" ")[1]), body


@pytest.mark.parametrize("token", [b"\xff\xfe\xfd", "caf\u00e9".encode(), b"two words",
                                   "\u00e9t\u00e9".encode("latin-1")])
@pytest.mark.parametrize("path", [b"GET /v1/things/c1", b"PUT /admin/things/c1"])
async def test_garbled_bearer_token_is_401_json(probe: tuple[Probe, TestClient], token: bytes,
                                                path: bytes) -> None:
    found, client = probe
    status, body = await _raw(client, path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                             b"Authorization: Bearer " + token + b"\r\n\r\n")
    assert status == 401 and msgspec.json.decode(body)["error"]["code"] == "unauthorized"
    assert found.calls == []


def test_a_path_param_without_a_pattern_cannot_be_declared() -> None:
    routes = ApiRoutes("x")

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="cid"):
        routes.route("GET", "/v1/things/{cid}", "no pattern")(handler)
    with pytest.raises(ValueError, match="cid"):
        routes.route("GET", "/v1/things", "pattern for nothing", path_params=CID)(handler)


# -- the real apps ---------------------------------------------------------------

async def test_real_routes_refuse_off_pattern_ids_in_the_json_shape(api: Api) -> None:
    user = _bearer(_token("alice"))
    for resp in (await api.public.get("/v1/claims/not-a-claim-id", headers=user),
                 await api.public.post("/v1/coupons/x/gift", headers=user),
                 await api.admin.get("/admin/v1/campaigns/BAD/stats", headers=api.viewer()),
                 await api.public.post("/v1/redemptions/BAD/rollback",
                                       headers=_bearer("m1.whatever"))):
        assert await _error(resp) == (400, "invalid_request")


async def test_merchant_routes_need_a_merchant_token(api: Api) -> None:
    for headers in ({}, _bearer(OPERATOR), _bearer(_token("alice")), _bearer("m1.forged")):
        resp = await api.public.get("/v1/redemptions/d1.00000000000000000000", headers=headers)
        assert await _error(resp) == (401, "unauthorized")


@pytest.mark.parametrize("path", [b"GET /v1/claims/c.00000000000000000000",
                                  b"GET /v1/redemptions/d1.00000000000000000000",
                                  b"GET /admin/v1/campaigns"])
async def test_non_utf8_bearer_on_real_routes_is_401(api: Api, path: bytes) -> None:
    client = api.admin if path.startswith(b"GET /admin") else api.public
    status, body = await _raw(client, path + b" HTTP/1.1\r\nHost: x\r\n"
                                             b"Authorization: Bearer \xc3\x28\xff\r\n\r\n")
    assert status == 401 and msgspec.json.decode(body)["error"]["code"] == "unauthorized"


async def test_one_jwt_decode_per_request(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A coupon claim needs the caller's id, account age and identity: one decode gives all,
    and a token seen before is not decoded again."""
    spec = msgspec.json.encode(drop_spec(templates={"five": FIVE_OFF}, per_person=1))
    assert (await api.admin.put("/admin/v1/campaigns/d1", data=spec, headers=api.op())).status \
        == 201
    decodes: list[str] = []
    original = Hs256.claims  # every new token goes there first (PyJWT only if it defers)

    def counted(self: Hs256, token: str) -> Any:
        decodes.append(token)
        found = original(self, token)
        assert found is not None  # a plain token: the fast path took it
        return found

    monkeypatch.setattr(Hs256, "claims", counted)
    alice = _bearer(_token("alice", idh="person-a", created_at=int(time.time()) - 10**6))
    resp = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                                 headers=alice)
    assert resp.status == 201, await resp.text()  # one per person: the idh got through
    assert len(decodes) == 1
    for _ in range(3):
        await api.public.get("/v1/me/coupons", headers=alice)
    assert len(decodes) == 1  # verified once, then only its expiry is checked
    resp = await api.public.post("/v1/campaigns/d1/coupons", json={"sku": "five"},
                                 headers=_bearer(_token("alice2", idh="person-a")))
    assert (resp.status, len(decodes)) == (409, 2)  # the same person under another account
