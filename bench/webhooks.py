"""Webhook delivery at the peak claim rate, beside the same run with no endpoint.

    python -m bench.webhooks [--seconds 3] [--drain 40] [--endpoints 1]

Two runs of `stampede serve` (embedded Valkey, SQLite, dev auth), one after
the other, each alone on the machine, each driven by the same closed loop of
claims (peak rate, bench/loadgen.py):

- baseline: no webhook endpoint;
- webhooks: `--endpoints` endpoints subscribed to every event, all pointing at
  a real receiver on loopback (aiohttp, in this process: it records when each
  `webhook-id` first arrives).

A watcher polls the store (SQLite, read-only, every 5 ms) for each event's
row: commit time is when its row was first seen. Reports claims/s of both and
their ratio, deliveries/s (first deliveries, from the first to the last), the
delay from commit to delivery (p50, p99, max), the backlog when the load
stopped and how long it took to drain. Writes bench/results/webhooks-<time>.json.
"""

import argparse
import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiohttp import web
from rich.console import Console

from bench import harness, loadgen

console = Console(width=140)
STOCK = 50_000_000
CONCURRENCY = 64


def http_json(url: str, method: str = "GET", body: Any = None) -> Any:
    return harness.admin_json(url, method, body)


@contextmanager
def stampede(extra_env: dict[str, str] | None = None) -> Iterator[harness.Served]:
    """`stampede serve` on free ports with a sale `bench` defined."""
    with harness.stampede_serve({"STAMPEDE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                                 **(extra_env or {})}, prefix="bench-hooks-") as served:
        spec = msgspec.to_builtins(harness.open_sale(STOCK, per_user=2, skus=("hot",)))
        http_json(f"{served.admin_url}/admin/v1/campaigns/bench", "PUT", spec)
        yield served


@dataclass
class Receiver:
    """A loopback webhook receiver in a thread of its own: first arrival per message id."""
    port: int = 0
    first: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        self.first.setdefault(request.headers["webhook-id"], time.time())
        return web.Response(status=204)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True, name="receiver").start()
        self._ready.wait(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/hook/{n}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()


class CommitWatcher:
    """Polls the store for new event rows: when each (campaign `bench`) seq was first seen."""

    def __init__(self, db: Path) -> None:
        self.db, self.seen = db, {}  # type: ignore[var-annotated]
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True, name="watcher")

    def _run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        top = 0
        while not self.stop.is_set():
            try:
                row = conn.execute("SELECT max(seq) FROM events WHERE campaign_id = 'bench'"
                                   ).fetchone()
            except sqlite3.OperationalError as exc:
                self.errors.append(str(exc))
                row = None
            now = time.time()
            if row and row[0] and row[0] > top:
                for seq in range(top + 1, row[0] + 1):
                    self.seen[f"bench.{seq}"] = now
                top = row[0]
            time.sleep(0.005)
        conn.close()


def claims(url: str, seconds: float, tag: str) -> loadgen.LoadResult:
    result: loadgen.LoadResult = harness.closed_claims(url, "bench", seconds, tag, CONCURRENCY)
    return result


def run(seconds: float, drain_s: float, endpoints: int) -> dict[str, Any]:
    with stampede() as svc:
        console.log("baseline: no endpoint")
        base = claims(svc.url, seconds, "base")
    receiver = Receiver()
    receiver.start()
    with stampede() as svc:
        for n in range(endpoints):
            http_json(f"{svc.admin_url}/admin/v1/webhooks", "POST",
                      {"url": f"http://127.0.0.1:{receiver.port}/hook/{n}", "events": ["*"]})
        watcher = CommitWatcher(svc.data_dir / "stampede.db")
        watcher.thread.start()
        console.log(f"with {endpoints} endpoint(s)")
        loaded = claims(svc.url, seconds, "hook")
        load_end = time.time()
        persisted_at_end = len(watcher.seen)
        backlog_at_end = persisted_at_end - len(receiver.first)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            time.sleep(0.1)
            # Every event persisted so far has arrived (the last claims' events too).
            if len(watcher.seen) >= loaded.ok and set(receiver.first) >= set(watcher.seen):
                break
        drained_at = time.time()
        watcher.stop.set()
        watcher.thread.join(5)
    committed = dict(watcher.seen)
    arrived = {m: t for m, t in receiver.first.items() if m in committed}
    delays = np.array([max(0.0, t - committed[m]) * 1000 for m, t in arrived.items()])
    times = sorted(arrived.values())
    span = (times[-1] - times[0]) if len(times) > 1 else 0.0
    return {
        "seconds": seconds, "endpoints": endpoints,
        "claims_per_s": {"no endpoint": base.ok_throughput, "webhooks": loaded.ok_throughput,
                         "ratio": loaded.ok_throughput / max(1.0, base.ok_throughput)},
        "events_committed": len(committed), "events_delivered": len(arrived),
        "undelivered_after_drain": len(committed) - len(arrived),
        "deliveries_per_s": len(arrived) / span if span else None,
        "requests_at_receiver": receiver.requests,
        "claims_answered": loaded.ok,
        "watcher_errors": sorted(set(watcher.errors))[:5],
        "persisted_when_load_stopped": persisted_at_end,
        "backlog_when_load_stopped": backlog_at_end,
        "drain_s_after_load": drained_at - load_end,
        "commit_to_delivery_ms": {
            "p50": float(np.percentile(delays, 50)) if len(delays) else None,
            "p99": float(np.percentile(delays, 99)) if len(delays) else None,
            "max": float(delays.max()) if len(delays) else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="closed loop per run")
    parser.add_argument("--drain", type=float, default=40.0,
                        help="most seconds to wait for the backlog after the load")
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    harness.sigterm_as_exit()
    idle = harness.idle_or_warn(console)
    report = {"idle_before": idle, **run(args.seconds, args.drain, args.endpoints)}
    c = report["claims_per_s"]
    d = report["commit_to_delivery_ms"]
    harness.report_table(console, "webhook delivery beside no endpoint (same run)", (
        ("claims/s, no endpoint", f"{c['no endpoint']:,.0f}"),
        ("claims/s, webhooks", f"{c['webhooks']:,.0f}"),
        ("ratio webhooks / none", f"{c['ratio']:.2f}"),
        ("events committed / delivered",
         f"{report['events_committed']:,} / {report['events_delivered']:,}"),
        ("deliveries/s", f"{report['deliveries_per_s'] or 0:,.0f}"),
        ("claims answered / events persisted when the load stopped",
         f"{report['claims_answered']:,} / {report['persisted_when_load_stopped']:,}"),
        ("persisted, not delivered, when the load stopped",
         f"{report['backlog_when_load_stopped']:,}"),
        ("drain after the load (s)", f"{report['drain_s_after_load']:.1f}"),
        ("commit→delivery p50 / p99 / max ms",
         " / ".join(f"{d[k]:,.0f}" if d[k] is not None else "-"
                    for k in ("p50", "p99", "max")))))
    harness.write_report(console, args.out, "webhooks", report)


if __name__ == "__main__":
    main()
