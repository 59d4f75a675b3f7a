"""Micro-benchmarks of the hot paths, each beside its baseline in the same run.

    .venv/bin/python -m pytest bench/micro --benchmark-json=bench/results/micro.json

Compare two runs (e.g. before and after a change):

    .venv/bin/python -m pytest bench/micro --benchmark-autosave
    # ...change...
    .venv/bin/python -m pytest bench/micro --benchmark-autosave --benchmark-compare
"""

import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import jwt
import msgspec
import orjson
import pytest
import redis

from bench import harness
from stampede.domain.models import ClaimRequest, ClaimView
from stampede.state import keys
from stampede.state.scripts import render

BODY = b'{"sku": "tee-black-m", "qty": 1}'
VIEW = ClaimView(claim_id="launch.0123456789abcdef0123", campaign_id="launch",
                 sku="tee-black-m", qty=1, status="held",
                 expires_at=datetime(2026, 1, 1, tzinfo=UTC), price=1999,
                 created_at=datetime(2026, 1, 1, tzinfo=UTC))
SECRET = "bench-secret-0123456789-0123456789-01"


# -- request decode / response encode ------------------------------------------

_decoder = msgspec.json.Decoder(ClaimRequest)
_encoder = msgspec.json.Encoder()


def test_decode_claim_msgspec(benchmark: Any) -> None:
    assert benchmark(_decoder.decode, BODY).sku == "tee-black-m"


def test_decode_claim_baseline_json_and_checks(benchmark: Any) -> None:
    def stdlib() -> dict[str, Any]:
        data = json.loads(BODY)
        if set(data) - {"sku", "qty"} or not isinstance(data.get("qty"), int):
            raise ValueError
        return data  # type: ignore[no-any-return]
    benchmark(stdlib)


def test_encode_view_msgspec(benchmark: Any) -> None:
    benchmark(_encoder.encode, VIEW)


def test_encode_view_baseline_orjson_dict(benchmark: Any) -> None:
    benchmark(lambda: orjson.dumps({f: getattr(VIEW, f) for f in VIEW.__struct_fields__}))


# -- token verification ---------------------------------------------------------

TOKEN = jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


def test_verify_jwt_hs256(benchmark: Any) -> None:
    benchmark(jwt.decode, TOKEN, SECRET, algorithms=["HS256"], options={"require": ["sub"]})


def test_verify_jwt_hs256_fast_path(benchmark: Any) -> None:
    """The gateway's HS256 check of a plain token (stampede.api.hs256), beside PyJWT's."""
    from stampede.api.hs256 import Hs256

    verifier = Hs256(SECRET)
    assert benchmark(verifier.claims, TOKEN) is not None


def test_verify_new_token_gateway(benchmark: Any) -> None:
    """Everything the gateway does for a token never seen before (fast path, the claims
    it reads, its cache); each round a new token, as in bench.e2e."""
    from stampede.api.auth import Authenticator

    authn = Authenticator(SECRET, False, ())
    now = int(time.time())
    tokens = iter([jwt.encode({"sub": f"u{i}", "iat": now, "exp": now + 3600}, SECRET,
                              algorithm="HS256") for i in range(20_000)])
    benchmark.pedantic(lambda: authn._verified(next(tokens)),  # type: ignore[attr-defined]
                       rounds=20_000, iterations=1)


def test_verify_dev_header_baseline(benchmark: Any) -> None:
    benchmark(keys.valid_user_id, "alice")


def test_admin_token_compare(benchmark: Any) -> None:
    benchmark(hmac.compare_digest, b"operator-token-value", b"operator-token-value")


# -- claim batch script by batch size -------------------------------------------

@pytest.mark.parametrize("size", [1, 16, 64, 256])
def test_claim_batch_script(benchmark: Any, valkey: "redis.Redis[str]", size: int) -> None:
    """One EVALSHA carrying `size` claims; ops/s x size = claims/s."""
    from stampede.domain.engine import _define_args
    from stampede.state.records import ClaimArg, encode_claims

    cid = f"micro{size}"
    valkey.delete(*keys.campaign_keys(cid))
    define = valkey.register_script(render("define_campaign"))
    define(keys=[*keys.campaign_keys(cid), keys.lists_key(cid)],
           args=_define_args(cid, harness.open_sale(100_000_000, per_user=None), "bench"))
    claim = valkey.register_script(render("claim_batch"))
    counter = iter(range(10**9))

    def one_batch() -> Any:
        batch = [ClaimArg(keys.new_claim_id(cid), f"u{next(counter)}", "hot", 1, 0, -1, "hot:1")
                 for _ in range(size)]
        return claim(keys=[*keys.campaign_keys(cid), *keys.guard_keys(cid)],
                     args=[86_400_000, 100, encode_claims(batch)])

    reply = benchmark(one_batch)
    assert reply[0] == 0
    benchmark.extra_info["claims_per_call"] = size
