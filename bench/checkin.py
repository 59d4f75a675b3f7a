"""Door check-ins per second through one service, beside sale claims through the same one.

Starts `stampede serve` (one worker, embedded Valkey, SQLite, persister on,
dev auth), defines a ticketed sale of `--tickets` tickets and buys every one
over HTTP (claim + confirm, one user each), issues a door scanner, then runs
closed loops of 64 connections, interleaved round by round so that machine
drift hits both alike:

- check-in: `POST /v1/checkins`, one scan per request, each ticket's current
  rotating code (computed here with the service's coupon key), tickets in
  turn: the first pass admits every ticket, later passes answer checked_in
  (a second scan costs the same script call);
- baseline: `POST /v1/campaigns/sale/claims`, a new user per request: the
  service's main path, through the same process.

After the runs the accounting is checked: every ticket admitted exactly once
(check-ins by gate in stats = tickets scanned at least once). Prints each
rate, the ratio check-in/claim and the ratio to the goal (2,000/s).

Then grants: ops grant a drop's two-coupon pack to a segment of `--segment`
users (`POST /admin/v1/campaigns/fans/grants`, 2,000 users a request),
timed, and the accounting checked (2 coupons issued per user). The rate is
reported beside the claim baseline's, per unit.

    python -m bench.checkin [--tickets=5000] [--seconds 3] [--rounds 2] [--segment 20000]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from bench import harness, loadgen
from stampede.domain.coupons.codes import STEP_MS, CodeKeys
from stampede.domain.tickets import ticket_code

ADMIN = "bench-admin-token"
KEYS = "A:bench-ticket-key-0123456789"
GOAL = 2000.0
GRANT_REQUEST = 2000
"""Users per grant request (the route takes up to 10,000)."""


def _http_json(url: str, method: str = "GET", body: dict[str, Any] | None = None,
               token: str | None = None, timeout: float = 30) -> Any:
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


async def _buy_all(base: str, n: int) -> list[str]:
    """Claim and confirm one ticket per user t0..t{n-1}; their ticket ids, in order."""
    out: list[str] = [""] * n
    sem = asyncio.Semaphore(64)
    async with aiohttp.ClientSession() as http:
        async def buy(i: int) -> None:
            user = {"X-User-Id": f"t{i}"}
            async with sem:
                async with http.post(f"{base}/v1/campaigns/gig/claims", json={"sku": "ga"},
                                     headers=user) as resp:
                    claim = (await resp.json())["claim_id"]
                async with http.post(f"{base}/v1/claims/{claim}/confirm", headers=user) as r:
                    assert r.status == 200, await r.text()
            out[i] = f"{claim}-1"
        await asyncio.gather(*(buy(i) for i in range(n)))
    return out


class _Codes:
    """The request body of user t<i>: ticket i's code for the current step (and the
    next: a run that crosses a step boundary still shows valid codes)."""

    def __init__(self, tickets: list[str]) -> None:
        keys = CodeKeys.parse(KEYS)
        step = int(time.time() * 1000) // STEP_MS
        self.bodies = {f"t{i}": json.dumps({"code": ticket_code(keys, t, step)}).encode()
                       for i, t in enumerate(tickets)}

    def __call__(self, user: str) -> bytes:
        return self.bodies[user]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tickets", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--segment", type=int, default=20_000,
                    help="users granted a pack in the grant phase (the goal's size: 100000)")
    args = ap.parse_args(argv)
    harness.sigterm_as_exit()
    idle = harness.idle_fraction()
    if idle < 0.8:
        print(f"warning: the machine is only {idle:.0%} idle; figures will be low")
    with tempfile.TemporaryDirectory(prefix="bench-checkin-") as tmp:
        port, admin_port = harness.free_port(), harness.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
        env.update({"STAMPEDE_DATA_DIR": tmp, "STAMPEDE_ADMIN_TOKENS": f"operator:{ADMIN}",
                    "STAMPEDE_DEV_AUTH": "1", "STAMPEDE_COUPON_KEYS": KEYS})
        cmd = [str(Path(sys.executable).parent / "stampede"), "serve", "--port", str(port),
               "--admin-port", str(admin_port), "--workers", "1"]
        base, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
        with harness.service(cmd, ready_url=f"{base}/readyz", env=env, name="checkin",
                             timeout=60):
            gig = msgspec.to_builtins(harness.open_sale(args.tickets, per_user=None,
                                                        skus=("ga",),
                                                        tickets={"venue": "arena"}))
            _http_json(f"{admin}/admin/v1/campaigns/gig", "PUT", gig, ADMIN)
            sale = msgspec.to_builtins(harness.open_sale(10_000_000, per_user=None))
            _http_json(f"{admin}/admin/v1/campaigns/sale", "PUT", sale, ADMIN)
            scanner = _http_json(f"{admin}/admin/v1/scanners/gate-a", "PUT",
                                 {"venue": "arena", "gate": "a"}, ADMIN)
            started = time.perf_counter()
            tickets = asyncio.run(_buy_all(base, args.tickets))
            print(f"bought {len(tickets):,} tickets over HTTP in "
                  f"{time.perf_counter() - started:.1f}s")
            rates: dict[str, list[float]] = {"check-in": [], "claim (baseline)": []}
            scans = reach = 0
            for r in range(args.rounds):
                res = loadgen.run_closed(
                    f"{base}/v1/checkins", concurrency=args.concurrency,
                    duration=args.seconds, body=_Codes(tickets),
                    users=loadgen.Users(count=len(tickets), prefix="t"), user_header=None,
                    headers={"Authorization": f"Bearer {scanner['token']}"}, progress=False)
                assert res.status_counts.keys() <= {200}, res.summary()
                scans += res.requests
                reach = max(reach, res.requests)  # each round starts again at t0
                rates["check-in"].append(res.ok_throughput)
                base_res = loadgen.run_closed(
                    f"{base}/v1/campaigns/sale/claims", concurrency=args.concurrency,
                    duration=args.seconds, users=loadgen.Users(prefix=f"r{r}-"),
                    body=b'{"sku":"hot","qty":1}', progress=False)
                rates["claim (baseline)"].append(base_res.ok_throughput)
                print(f"round {r + 1}: check-in {res.ok_throughput:,.0f}/s, "
                      f"claim {base_res.ok_throughput:,.0f}/s")
            stats = _http_json(f"{admin}/admin/v1/campaigns/gig/stats", token=ADMIN)
            grants_per_s, issued = _grant_phase(admin, args.segment)
    admitted = sum(stats["checkins"].values())
    # Each round scans in turn from t0 (every connection together): the longest
    # round reaches min(its requests, tickets) of them, give or take the
    # requests still in flight when a closed loop stops.
    expected = min(reach, len(tickets))
    ok = admitted <= len(tickets) and admitted >= expected - args.concurrency
    best = {k: max(v) for k, v in rates.items()}
    print(f"\ncheck-ins through one service: {best['check-in']:,.0f}/s "
          f"(goal {GOAL:,.0f}/s: ratio {best['check-in'] / GOAL:.2f})")
    print(f"sale claims through the same service: {best['claim (baseline)']:,.0f}/s; "
          f"check-in/claim ratio {best['check-in'] / best['claim (baseline)']:.2f}")
    print(f"accounting: {admitted:,} admitted of {len(tickets):,} tickets after "
          f"{scans:,} scans: {'ok' if ok else 'WRONG'}")
    granted_ok = issued == 2 * args.segment
    print(f"grants: {args.segment:,} users in {args.segment / grants_per_s:.1f}s, "
          f"{grants_per_s:,.0f} users/s ({2 * grants_per_s:,.0f} coupons/s); "
          f"ratio to the claim baseline {grants_per_s / best['claim (baseline)']:.2f}; "
          f"coupons issued {issued:,}: {'ok' if granted_ok else 'WRONG'}")
    return 0 if ok and granted_ok else 1


def _grant_phase(admin: str, segment: int) -> tuple[float, int]:
    """Grant a two-coupon pack to `segment` users; (users per second, coupons issued)."""
    five = {"kind": "fixed_off", "face_value": 500, "valid_days": 30}
    drop = msgspec.to_builtins(harness.open_sale(segment, per_user=None, skus=("welcome",)))
    drop["coupons"] = {"templates": {"five": five, "ten": {**five, "face_value": 1000}},
                       "packs": {"welcome": ["five", "ten"]}}
    for sku in drop["skus"]:
        sku["price"] = 0
    _http_json(f"{admin}/admin/v1/campaigns/fans", "PUT", drop, ADMIN)
    users = [f"s{i}" for i in range(segment)]
    started = time.perf_counter()
    for at in range(0, segment, GRANT_REQUEST):
        part = users[at:at + GRANT_REQUEST]
        out = _http_json(f"{admin}/admin/v1/campaigns/fans/grants", "POST",
                         {"sku": "welcome", "users": part}, ADMIN, timeout=300)
        assert out["granted"] == len(part), out["results"][:3]
    elapsed = time.perf_counter() - started
    stats = _http_json(f"{admin}/admin/v1/campaigns/fans/coupons/stats", token=ADMIN)
    return segment / elapsed, int(stats["totals"]["issued"])


if __name__ == "__main__":
    raise SystemExit(main())
