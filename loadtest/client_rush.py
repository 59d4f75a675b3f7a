"""A rush of shoppers written with the Python client (stampede.client), not locust.

Each shopper is one asyncio task doing what a well-behaved front-end does:
take a waiting-room ticket and wait for admission, claim (the client keeps
the Idempotency-Key across retries, honours Retry-After, solves a challenge),
then confirm. It prints one JSON line: outcomes by code, the claim latency
percentiles and the retries the client made; units sold never exceed stock.

    .venv/bin/python loadtest/client_rush.py --host http://127.0.0.1:8000 \\
        --admin-token "$(cat var/admin.token)" --shoppers 200 --stock 50

Against a dev-auth server (STAMPEDE_DEV_AUTH=1) shoppers are X-User-Id headers.
"""

import argparse
import asyncio
import json
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from stampede.client import AsyncClient, StampedeError


def _admin_url(host: str) -> str:
    parts = urlsplit(host)
    return f"{parts.scheme}://{parts.hostname}:{(parts.port or 80) + 1}"


def create_campaign(admin_url: str, token: str, cid: str, stock: int, rate: float) -> None:
    opens = datetime.now(UTC) - timedelta(seconds=1)
    spec = {"name": f"Client rush {cid}", "opens_at": opens.isoformat(),
            "closes_at": (opens + timedelta(hours=1)).isoformat(), "limits": {"per_user": 1},
            "skus": [{"sku": "tee", "price": 100,
                      "waves": [{"at": opens.isoformat(), "qty": stock}]}],
            "waiting_room": {"rate_per_s": rate, "admission_window_s": 600}}
    req = urllib.request.Request(f"{admin_url}/admin/v1/campaigns/{cid}", method="PUT",
                                 data=json.dumps(spec).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10):
        pass


async def shopper(host: str, cid: str, user: str, outcomes: Counter[str],
                  latencies: list[float], retries: Counter[str]) -> None:
    async with AsyncClient(host, headers={"X-User-Id": user},
                           on_retry=lambda n, wait, err: retries.update([err.code])) as shop:
        try:
            await shop.wait_for_admission(cid, min_s=0.2, max_s=2.0)
            started = time.perf_counter()
            try:
                hold = await shop.claim(cid, "tee")
            finally:
                latencies.append(time.perf_counter() - started)
            await shop.confirm(hold.claim_id)
            outcomes["confirmed"] += 1
        except StampedeError as err:
            outcomes[err.code] += 1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def rush(host: str, cid: str, shoppers: int) -> dict[str, object]:
    outcomes: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(shopper(host, cid, f"rusher-{cid}-{i}", outcomes, latencies,
                                   retries) for i in range(shoppers)))
    return {"campaign": cid, "shoppers": shoppers, "outcomes": dict(outcomes),
            "retries": dict(retries), "seconds": round(time.perf_counter() - started, 2),
            "claim_p50_ms": round(1000 * percentile(latencies, 0.5), 1),
            "claim_p99_ms": round(1000 * percentile(latencies, 0.99), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="the public API, e.g. http://127.0.0.1:8000")
    parser.add_argument("--admin-url", help="default: --host with the next port")
    parser.add_argument("--admin-token", required=True)
    parser.add_argument("--campaign", default=f"client-rush-{int(time.time())}")
    parser.add_argument("--shoppers", type=int, default=100)
    parser.add_argument("--stock", type=int, default=25)
    parser.add_argument("--admit-per-s", type=float, default=200.0)
    opts = parser.parse_args()
    create_campaign(opts.admin_url or _admin_url(opts.host), opts.admin_token, opts.campaign,
                    opts.stock, opts.admit_per_s)
    print(json.dumps(asyncio.run(rush(opts.host, opts.campaign, opts.shoppers))))


if __name__ == "__main__":
    main()
