"""The gateway's bounded memos: bounded, first in first out, and invisible to the GC."""

import gc

import pytest

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
