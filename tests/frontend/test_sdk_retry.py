"""The SDK's retries in a real Chromium against a real service made to answer 429
(the campaign's per-user rate) and 503 (its Valkey stopped: the claim times out):
each retry waits at least Retry-After, keeps the intent's Idempotency-Key, and
the intent ends in exactly one hold."""

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.frontend.network import offline
from tests.frontend.shop import put_campaign, sku_stats
from tests.system.service import Service

RUN = """async ([cid, n]) => {
  const { Stampede, StampedeError } = await import('/sdk/v1/stampede.js');
  const retries = [];
  const shop = new Stampede({ headers: { 'X-User-Id': 'rita' }, onRetry: (e) => retries.push({
    status: e.error.status, code: e.error.code, delayMs: e.delayMs,
    after: e.error.retryAfterMs }) });
  const holds = [];
  for (let i = 1; i <= n; i++) holds.push(await shop.claim(cid, { sku: 'tee', qty: i }));
  let refused = null;
  const strict = new Stampede({ headers: { 'X-User-Id': 'rita' }, retry: { attempts: 1 } });
  try { await strict.claim(cid, { sku: 'tee', qty: 3 }); }
  catch (e) { refused = { isError: e instanceof StampedeError, code: e.code,
                          status: e.status, retryable: e.retryable, after: e.retryAfterMs }; }
  return { holds: holds.map((h) => h.claim_id), retries, refused };
}"""


async def test_429_is_retried_after_retry_after_with_one_key(page: Any,
                                                              service: Service) -> None:
    put_campaign(service, "paced", qty=10, limits={"per_user": 10},
                 throttle={"user": {"per_s": 0.5, "burst": 1}})
    await offline(page)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.headers.get("idempotency-key", ""))
            if r.url.endswith("/claims") else None)
    await page.goto(f"{service.url}/docs")
    out = await page.evaluate(RUN, ["paced", 2])
    # The first claim passes; the second is throttled (Retry-After 2 s), then passes.
    assert len(out["holds"]) == 2
    assert out["retries"] and all(r["status"] == 429 for r in out["retries"])
    assert all(r["delayMs"] >= r["after"] for r in out["retries"])
    assert sum(r["delayMs"] for r in out["retries"]) >= 1000
    second = sent[1:-1]  # (the last is the strict client's)
    assert len(set(second)) == 1 and len(second) == 1 + len(out["retries"])
    # With retries off, the refusal is a typed, retryable error with its wait.
    assert out["refused"] == {"isError": True, "code": "throttled", "status": 429,
                              "retryable": True, "after": out["refused"]["after"]}
    assert out["refused"]["after"] > 0
    assert sku_stats(service, "paced")["held"] == 3  # qty 1 + qty 2


@pytest.fixture
def stalling(tmp_path: Path) -> Iterator[Service]:
    """A service of its own: its Valkey is stopped for a while, which its periodic
    workers log (with a traceback) and retry; the shared service stays clean."""
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        svc.kill()
    for line in svc.output().splitlines():
        assert "Traceback" not in line or "retrying" in line, line[:500]


async def test_503_is_retried_until_the_backend_is_back_with_one_hold(
        page: Any, stalling: Service) -> None:
    service = stalling
    put_campaign(service, "stall", qty=10)
    await offline(page)
    await page.goto(f"{service.url}/docs")
    refused = asyncio.Event()
    page.on("response", lambda r: refused.set() if r.status == 503 else None)
    valkey = service.valkey_pid
    os.kill(valkey, signal.SIGSTOP)  # the claim's script call times out: 503 unavailable
    try:
        claim = asyncio.ensure_future(page.evaluate("""async () => {
          const { Stampede } = await import('/sdk/v1/stampede.js');
          const seen = [];
          const shop = new Stampede({ headers: { 'X-User-Id': 'sam' },
            retry: { capMs: 8000 }, onRetry: (e) => seen.push(e.error.status) });
          const hold = await shop.claim('stall', { sku: 'tee' });
          return { hold, seen };
        }"""))
        await asyncio.wait_for(refused.wait(), 20)  # the first try's answer
    finally:
        os.kill(valkey, signal.SIGCONT)
    out = await asyncio.wait_for(claim, 30)
    assert out["seen"] and out["seen"][0] == 503
    assert out["hold"]["status"] == "held"
    stats = sku_stats(service, "stall")
    assert (stats["held"], stats["available"]) == (1, 9)


async def test_a_retry_after_beyond_the_cap_is_thrown_not_waited_for(
        page: Any, service: Service) -> None:
    put_campaign(service, "slow", qty=10, limits={"per_user": 10},
                 throttle={"user": {"per_s": 0.01, "burst": 1}})  # one claim per 100 s
    await offline(page)
    await page.goto(f"{service.url}/docs")
    out = await page.evaluate("""async () => {
      const { Stampede } = await import('/sdk/v1/stampede.js');
      const retries = [];
      const shop = new Stampede({ headers: { 'X-User-Id': 'tom' }, retry: { capMs: 8000 },
                                  onRetry: (e) => retries.push(e) });
      await shop.claim('slow', { sku: 'tee', qty: 1 });
      const t0 = performance.now();
      try { await shop.claim('slow', { sku: 'tee', qty: 2 }); return { ok: true }; }
      catch (e) { return { code: e.code, after: e.retryAfterMs, retries: retries.length,
                           ms: performance.now() - t0 }; }
    }""")
    assert out["code"] == "throttled" and out["retries"] == 0
    assert out["after"] > 8000 and out["ms"] < 3000
