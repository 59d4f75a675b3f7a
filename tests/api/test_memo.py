"""The gateway's bounded memos: bounded, first in first out, and invisible to the GC."""

import gc

import pytest
from aiohttp import web

from stampede.api import guard
from stampede.api.auth import Authenticator, mint_user_token
from stampede.api.memo import Memo

SECRET = "memo-test-secret-0123456789-0123456789"


def test_bounded_first_in_first_out_and_errors_not_kept() -> None:
    calls: list[int] = []

    def square(n: int) -> int:
        calls.append(n)
        if n < 0:
            raise ValueError(n)
        return n * n

    memo = Memo(square, 3)
    assert [memo(n) for n in (1, 2, 3, 1)] == [1, 4, 9, 1]
    assert calls == [1, 2, 3] and len(memo) == 3
    assert memo(4) == 16 and len(memo) == 3  # 1 went first
    assert memo(1) == 1 and calls == [1, 2, 3, 4, 1]
    for _ in range(2):
        with pytest.raises(ValueError):
            memo(-1)
    assert calls[-2:] == [-1, -1]


def test_verified_tokens_are_not_walked_by_the_collector() -> None:
    """Each kept token is a tuple of atoms: after one collection the GC stops tracking
    it, so a full cache adds nothing to a full collection's pause."""
    authn = Authenticator(SECRET, False, ())
    tokens = [mint_user_token(SECRET, f"u{i}", tiers=["vip"], idh="person")
              for i in range(50)]
    kept = [authn._verified(t) for t in tokens]  # type: ignore[attr-defined]
    gc.collect()  # untracks the tiers tuples,
    gc.collect()  # then the tuples holding them
    assert not any(gc.is_tracked(v) for v in kept)
    assert not gc.is_tracked(authn._verified._kept)  # type: ignore[attr-defined]


def test_client_networks_are_not_walked_by_the_collector() -> None:
    assert guard._network(("192.0.2.7", None, "")) == "192.0.2.0/24"
    assert guard._networks(("198.51.100.9", None, "")) == "198.51.100.0/24"
    gc.collect()
    assert not gc.is_tracked(guard._networks._kept)


def test_long_forwarded_for_headers_are_answered_but_not_kept() -> None:
    """The client writes X-Forwarded-For: a long one is parsed, never kept, so the
    memo's memory does not grow with what clients send."""
    from aiohttp.test_utils import make_mocked_request

    from stampede.api.context import ENGINE
    from stampede.settings import Settings

    class _Engine:
        settings = Settings(trusted_proxies="127.0.0.1/32")

    app = web.Application()
    app[ENGINE] = _Engine()  # type: ignore[assignment]
    long_chain = ", ".join(["203.0.113.9"] + ["127.0.0.1"] * 40)
    before = len(guard._networks)
    request = make_mocked_request("POST", "/", headers={"X-Forwarded-For": long_chain},
                                  app=app)
    assert guard.client_network(request) in ("203.0.113.0/24", "unknown")
    assert len(guard._networks) == before
