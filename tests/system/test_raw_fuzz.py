"""Raw bytes against a real `stampede serve`: no input yields a 5xx or a non-JSON error.

schemathesis (test_openapi_fuzz.py) sends what the spec describes; this sends
what it cannot: header values and paths with bytes that are not text, bodies
of random bytes, JSON nested thousands deep, bodies over the size cap, and
numbers at and past every bound of a campaign (after which the campaign is
claimed from, so a setting a script cannot hold shows up as a 500 there).
Requests go over plain sockets, so nothing on our side cleans them up.
Examples are bounded and derandomized: the module runs in about 15 s.
"""

import itertools
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stampede.api import admin, app, coupons, guard, public, queues
from tests.system.service import Service

OPERATOR = "fuzz-operator"
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

CAMPAIGN: dict[str, Any] = {
    "name": "Raw", "opens_at": "2026-01-01T00:00:00Z", "closes_at": "2099-01-01T00:00:00Z",
    "hold_ttl_s": 600, "limits": {"per_user": 5, "max_per_claim": 3},
    "skus": [{"sku": "tee", "price": 100, "per_user": 4,
              "waves": [{"at": "2026-01-01T00:00:00Z", "qty": 1000}]}],
    "waitlist": {"max_length": 100, "offer_ttl_s": 60},
    "throttle": {"user": {"per_s": 5.0, "burst": 3}, "device": {"per_s": 5.0, "burst": 3},
                 "network": {"per_s": 50.0, "burst": 30},
                 "campaign": {"per_s": 500.0, "burst": 300},
                 "accounts_per_device": {"challenge_above": 5, "reject_above": 9,
                                         "window_s": 60},
                 "risk": [{"signal": "lapses", "action": "challenge", "above": 3.0}],
                 "challenge": {"base_bits": 4, "step_bits": 1, "max_bits": 8},
                 "recent_window_s": 60},
}
DROP: dict[str, Any] = CAMPAIGN | {
    "skus": [{"sku": "five", "price": 0, "waves": [{"at": "2026-01-01T00:00:00Z",
                                                     "qty": 1000}]}],
    "coupons": {"templates": {"five": {"kind": "pack", "face_value": 500, "item": "coffee",
                                       "uses": 3, "valid_days": 30},
                              "ten": {"kind": "percent_off", "face_value": 900, "percent": 10,
                                      "threshold": 1000, "valid_days": 7}},
                "per_user_per_day": 3, "per_day": 500, "budget": 100000,
                "merchant_daily_cap": 50}}
ROOM = {"waiting_room": {"rate_per_s": 50.0, "burst": 10, "max_active": 100,
                         "admission_window_s": 60, "token_ttl_s": 30}}
PATCH = {"hold_ttl_s": 300, "limits": {"per_user": 3, "max_per_claim": 2},
         "sku_limits": {"tee": 2}, "throttle": CAMPAIGN["throttle"]}

HEADERS = [b"Authorization", b"X-User-Id", b"X-Device-Id", b"Idempotency-Key",
           b"X-Admission-Token", b"X-Challenge-Token", b"X-Challenge-Solution",
           b"X-Forwarded-For", b"X-Identity-Hash", b"X-Account-Created", b"X-Request-Id",
           b"Content-Type", b"Content-Length", b"Transfer-Encoding", b"Host"]
PARAMS = {"cid": "raw", "sku": "tee", "claim_id": "raw.0123456789abcdef0123",
          "coupon_id": "drop.0123456789abcdef0123",
          "redemption_id": "drop.0123456789abcdef0123", "mid": "m1"}
NOT_JSON_OK = {"/docs", "/metrics", "/v1/pow-solver.js"}
"""Successful answers that are not JSON by design (errors still are)."""


def _routes() -> list[tuple[str, str]]:
    ops = (app.health.operations + public.api.operations + queues.api.operations
           + guard.api.operations + coupons.api.operations + admin.api.operations
           + coupons.admin_api.operations)
    return [(op.method, op.path.format(**PARAMS)) for op in ops]


ROUTES = _routes()


def _send(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (413, 400) and closed before the body was all sent
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), answer[:200]
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _check(port: int, raw: bytes) -> int:
    status, headers, body = _send(port, raw)
    assert status < 500, (status, raw[:300], body[:300])
    path = raw.split(b" ")[1].split(b"?")[0].decode("latin-1") if b" " in raw else ""
    if status >= 400 or path not in NOT_JSON_OK:
        assert headers.get("content-type", "").startswith("application/json"), (raw[:300],
                                                                                  body[:300])
        if "chunked" not in headers.get("transfer-encoding", ""):
            parsed = json.loads(body)
            if status >= 400:
                assert set(parsed["error"]) >= {"code", "message"}, parsed
    return status


def _request(method: bytes, path: bytes, headers: list[tuple[bytes, bytes]],
             body: bytes) -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: fuzz", b"Connection: close",
             b"Content-Length: " + str(len(body)).encode(),
             *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("raw"), env={
        "STAMPEDE_ADMIN_TOKENS": f"operator:{OPERATOR}",
        "STAMPEDE_POW_SECRETS": "k1:raw-fuzz-secret-0123456789"})
    try:
        for cid, spec in (("raw", CAMPAIGN), ("drop", DROP), ("room", CAMPAIGN | ROOM)):
            assert _check(svc.admin_port, _admin(b"PUT", cid, spec)) == 201
        yield svc
    finally:
        svc.kill()
    assert "Traceback" not in svc.output()


def _admin(method: bytes, cid: str, body: Any) -> bytes:
    return _request(method, f"/admin/v1/campaigns/{cid}".encode(),
                    [(b"Authorization", f"Bearer {OPERATOR}".encode()),
                     (b"Content-Type", b"application/json")], json.dumps(body).encode())


def _port(service: Service, path: str) -> int:
    return service.admin_port if path.startswith("/admin") else service.port


def _auth(path: str) -> tuple[bytes, bytes]:
    if path.startswith("/admin"):
        return b"Authorization", f"Bearer {OPERATOR}".encode()
    return b"X-User-Id", b"fuzzer"


header_value = st.binary(min_size=1, max_size=300).map(
    lambda b: b.replace(b"\r", b"\xff").replace(b"\n", b"\xfe"))
route = st.sampled_from(ROUTES)


@FUZZ
@given(route=route, name=st.sampled_from(HEADERS), value=header_value, with_auth=st.booleans())
def test_header_bytes(service: Service, route: tuple[str, str], name: bytes, value: bytes,
                      with_auth: bool) -> None:
    method, path = route
    headers = [_auth(path)] if with_auth else []
    _check(_port(service, path), _request(method.encode(), path.encode(),
                                          [*headers, (name, value)], b'{"sku": "tee"}'))


@FUZZ
@given(route=route, junk=st.binary(min_size=1, max_size=40), at=st.integers(0, 60),
       method=st.sampled_from([b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS",
                               b"G\x01T", b"\xff", b"TRACE", b"BREW"]))
def test_paths_and_methods(service: Service, route: tuple[str, str], junk: bytes, at: int,
                           method: bytes) -> None:
    path = route[1].encode()
    at = min(at, len(path))
    mangled = (path[:at] + junk + path[at:]).replace(b" ", b"%20").replace(b"\r", b"%0D") \
        .replace(b"\n", b"%0A")
    _check(_port(service, route[1]), _request(method, mangled, [_auth(route[1])], b""))


deep = st.integers(33, 20_000).map(lambda n: b"[" * n + b"]" * n)
deep_field = st.integers(33, 20_000).map(lambda n: b'{"sku": ' + b"{\"a\": " * n + b"1"
                                         + b"}" * (n + 1))
huge = st.integers(15_000, 600_000).map(lambda n: b'{"name": "' + b"x" * n + b'"}')
bodies = st.one_of(st.binary(max_size=3000), deep, deep_field, huge,
                   st.text(max_size=500).map(str.encode))


@FUZZ
@given(route=route, body=bodies, content_type=st.sampled_from(
    [b"application/json", b"text/plain", b"application/json; charset=latin-1"]))
def test_bodies(service: Service, route: tuple[str, str], body: bytes,
                content_type: bytes) -> None:
    method, path = route
    _check(_port(service, path), _request(method.encode(), path.encode(),
                                          [_auth(path), (b"Content-Type", content_type)], body))


EXTREMES = [0, -1, 1e-300, 1e-20, 1e308, -1e308, 2**63, 10**30]
NUMBERS = st.one_of(st.sampled_from(EXTREMES), st.sampled_from(EXTREMES),
                    st.sampled_from([0.5, 1e-5, 1e12, 1e13, 10**9 + 1, 100_001, 2**53 + 1]),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(-(2**70), 2**70))
"""Mostly the extremes, so every setting meets them within the bounded examples."""


def _number_paths(obj: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _number_paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _number_paths(v, (*at, i))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield at


def _replaced(obj: Any, at: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(obj))
    target = copy
    for key in at[:-1]:
        target = target[key]
    target[at[-1]] = value
    return copy


_fresh = itertools.count()
SETTINGS = [(spec, p) for spec in (CAMPAIGN, DROP, CAMPAIGN | ROOM, PATCH)
            for p in _number_paths(spec)]


@settings(FUZZ, max_examples=200)
@given(setting=st.sampled_from(SETTINGS), value=NUMBERS)
def test_numbers_then_claims(service: Service, setting: tuple[dict[str, Any], tuple[Any, ...]],
                             value: Any) -> None:
    """Every numeric setting at a random value; accepted or not, claims never fail."""
    spec, at = setting
    body = _replaced(spec, at, value)
    if spec is PATCH:
        _check(service.admin_port, _admin(b"PATCH", "raw", body))
        cid = "raw"
    else:
        cid = f"num-{next(_fresh)}"  # a campaign with claims cannot be replaced
        _check(service.admin_port, _admin(b"PUT", cid, body))
    user = [(b"X-User-Id", b"claimer"), (b"X-Device-Id", b"dev-1"),
            (b"Content-Type", b"application/json")]
    for path, claim in ((f"/v1/campaigns/{cid}/claims", b'{"sku": "tee", "qty": 1}'),
                        (f"/v1/campaigns/{cid}/coupons", b'{"sku": "five", "qty": 1}'),
                        (f"/v1/campaigns/{cid}/queue", b"")):
        for _ in range(2):
            _check(service.port, _request(b"POST", path.encode(), user, claim))
    _check(service.port, _request(b"GET", f"/v1/campaigns/{cid}".encode(), user, b""))
    _check(service.admin_port, _request(b"GET", f"/admin/v1/campaigns/{cid}/stats".encode(),
                                        [_auth("/admin")], b""))
