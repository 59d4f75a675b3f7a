"""Proof-of-work challenges and client network buckets."""

import shutil
import subprocess
from pathlib import Path

import pytest

from stampede.domain import netaddr, pow

KEY = b"k" * 32
NOW = 1_700_000_000_000


def test_a_solved_challenge_verifies() -> None:
    ch = pow.issue(KEY, "alice", "sale", 10, NOW)
    solution = pow.solve(ch.token, 10)
    verdict = pow.verify(KEY, ch.token, solution, "alice", "sale", NOW + 1000)
    assert verdict.ok and verdict.nonce == ch.nonce


@pytest.mark.parametrize("case,expected", [
    ("other user", "not yours"), ("other campaign", "not yours"), ("expired", "expired"),
    ("forged", "forged"), ("altered", "forged"), ("lazy", "insufficient work"),
    ("rotated key", "forged"), ("garbage", "malformed"),
])
def test_bad_solutions_are_refused(case: str, expected: str) -> None:
    ch = pow.issue(KEY, "alice", "sale", 12, NOW)
    solution = pow.solve(ch.token, 12)
    token, user, campaign, now, key = ch.token, "alice", "sale", NOW, KEY
    if case == "other user":
        user = "bob"
    elif case == "other campaign":
        campaign = "other"
    elif case == "expired":
        now = ch.expires_ms
    elif case == "forged":
        token = pow.issue(b"x" * 32, "alice", "sale", 0, NOW).token
        solution = "0"
    elif case == "altered":
        forged = pow.issue(KEY, "alice", "sale", 0, NOW).token.split(".")[0]
        token = f"{forged}.{ch.token.split('.')[1]}"
    elif case == "lazy":
        solution = next(str(c) for c in range(10**6)
                        if pow.leading_zero_bits(__import__("hashlib").sha256(
                            f"{token}:{c}".encode()).digest()) < 12)
    elif case == "rotated key":
        key = b"n" * 32
    elif case == "garbage":
        token = "not-a-token"
    assert pow.verify(key, token, solution, user, campaign, now).reason == expected


def test_old_keys_verify_until_retired() -> None:
    ch = pow.issue(b"old" * 11, "alice", "sale", 4, NOW)
    solution = pow.solve(ch.token, 4)
    keys = {"new": b"new" * 11, "old": b"old" * 11}
    assert pow.verify(keys, ch.token, solution, "alice", "sale", NOW).ok
    del keys["old"]
    assert not pow.verify(keys, ch.token, solution, "alice", "sale", NOW).ok


@pytest.mark.skipif(shutil.which("node") is None, reason="no node: JS solver not exercised")
def test_javascript_solver_agrees() -> None:
    ch = pow.issue(KEY, "alice", "sale", 10, NOW)
    js = Path(__file__).resolve().parents[2] / "stampede" / "api" / "static" / "pow-solver.js"
    script = (f"const {{solveChallenge}} = require({str(js)!r});"
              f"solveChallenge({ch.token!r}, 10).then(s => console.log(s));")
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert pow.verify(KEY, ch.token, out.stdout.strip(), "alice", "sale", NOW).ok


@pytest.mark.parametrize("address,network", [
    ("203.0.113.77", "203.0.113.0/24"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.9", "198.51.100.0/24"), ("nonsense", "unknown"),
])
def test_network_buckets(address: str, network: str) -> None:
    assert netaddr.network_of(address) == network


def test_forwarded_for_only_behind_a_trusted_proxy() -> None:
    proxies = netaddr.parse_networks("10.0.0.0/8")
    assert netaddr.client_address("198.51.100.1", "1.2.3.4", proxies) == "198.51.100.1"
    assert netaddr.client_address("10.0.0.5", "1.2.3.4", proxies) == "1.2.3.4"
    assert netaddr.client_address("10.0.0.5", "9.9.9.9, 1.2.3.4, 10.0.0.7", proxies) == "1.2.3.4"
