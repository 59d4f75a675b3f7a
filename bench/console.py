"""What the ops console's live feed costs the service, and how many consoles a worker holds.

    python -m bench.console [--seconds 3] [--rounds 2] [--viewers 0,1000]

One `stampede serve` (one worker, dev auth, embedded Valkey, SQLite,
persister, the e2e benchmark's 65-SKU sale) is driven by the same closed
loop of claims (bench/loadgen.py, 64 connections) in three configurations,
interleaved round by round so that drift on a shared machine hits all of
them alike:

    none     no console open (the baseline)
    one      one console's live feed open (GET /admin/v1/live)
    many     1,000 console feeds open (all fed by the one poller)

It reports claims/s of each and their ratio to the baseline (goal: the feed
costs under 3%), and the server's CPU per claim. Then, with no load, it
opens N feeds for each N of --viewers and measures how long a change takes
to reach every one of them, the worker's memory, and its CPU per second with
N consoles watching a changing sale.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from bench import e2e, harness, loadgen

console = Console(width=150)
MANY = 1000
TICK_MS = 1000


class Consoles:
    """N console feeds held open from a thread of their own (its own event loop)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks: list[asyncio.Task[None]] = []
        self.latest: dict[int, bytes] = {}
        self.frames = 0
        self.session: aiohttp.ClientSession | None = None

    def _run(self, coro: Any, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(self, n: int) -> None:
        self._run(self._open(n))

    def close(self) -> None:
        self._run(self._close())

    def stop(self) -> None:
        self.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _open(self, n: int) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        ticket = _http_json(f"{self.admin_url}/admin/v1/live/ticket", "POST")["ticket"]
        opened = [asyncio.Event() for _ in range(n)]
        start = len(self.tasks)
        self.tasks += [asyncio.create_task(self._watch(start + i, ticket, opened[i]))
                       for i in range(n)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 120)

    async def _watch(self, i: int, ticket: str, opened: asyncio.Event) -> None:
        assert self.session is not None
        async with self.session.get(f"{self.admin_url}/admin/v1/live",
                                    params={"ticket": ticket}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"console feed {i}: {resp.status} {await resp.text()}")
            opened.set()
            buffer = b""
            # Kept raw and parsed only when asked (all_see): the readers share the
            # machine with the service, so they do as little as they can.
            async for chunk in resp.content.iter_any():
                buffer += chunk
                end = buffer.rfind(b"\n\n")
                if end < 0:
                    continue
                complete, buffer = buffer[:end], buffer[end + 2:]
                self.frames += complete.count(b"\ndata: ") + complete.startswith(b"data: ")
                start = complete.rfind(b"data: ")
                if start >= 0:
                    self.latest[i] = complete[start + 6:].split(b"\n", 1)[0]

    async def _close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.latest.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def all_see(self, predicate: Any) -> bool:
        if len(self.latest) != len(self.tasks):
            return False
        seen: dict[bytes, bool] = {}  # most consoles hold the same frame: parse it once
        for raw in list(self.latest.values()):
            if raw not in seen:
                seen[raw] = bool(predicate(json.loads(raw)))
            if not seen[raw]:
                return False
        return True


def _http_json(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    return e2e._http_json(url, method, body, e2e.ADMIN)


@contextmanager
def service(stack: ExitStack) -> Iterator[tuple[e2e.Target, str]]:
    """`stampede serve` (one worker, dev auth) with the e2e sale; yields it and its admin URL."""
    data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-console-")))
    port, admin_port = harness.free_port(), harness.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    env.update({"STAMPEDE_DATA_DIR": str(data), "STAMPEDE_ADMIN_TOKENS": f"operator:{e2e.ADMIN}",
                "STAMPEDE_DEV_AUTH": "1", "STAMPEDE_CONSOLE_TICK_MS": str(TICK_MS),
                "STAMPEDE_CONSOLE_MAX_LISTENERS": "20000"})
    cmd = [str(Path(sys.executable).parent / "stampede"), "serve", "--port", str(port),
           "--admin-port", str(admin_port)]
    with harness.service(cmd, ready_url=f"http://127.0.0.1:{port}/readyz", env=env,
                         name="stampede", timeout=60) as svc:
        admin_url = f"http://127.0.0.1:{admin_port}"
        e2e._stampede_campaign(admin_url, throttled=False)
        yield e2e.Target("stampede", f"http://127.0.0.1:{port}/v1/campaigns/bench/claims",
                         e2e._stampede_check(admin_url), roots=[svc.pid]), admin_url


def run_load(target: e2e.Target, seconds: float, tag: str) -> dict[str, float]:
    users = loadgen.Users(prefix=f"{tag}-")
    cpu_before = harness.tree_cpu_seconds(target.roots)
    result = loadgen.run_closed(target.url, concurrency=e2e.CONCURRENCY, duration=seconds,
                                users=users, workers=1, progress=False)
    ok = result.status_counts.get(201, 0)
    cpu = harness.tree_cpu_seconds(target.roots) - cpu_before
    return {"claims_per_s": result.ok_throughput, "cpu_us_per_claim": cpu * 1e6 / max(1, ok),
            "p99_ms": result.latency_ms.get("p99", 0.0)}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of this process alone (the gateway, not its Valkey or persister)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def capacity(target: e2e.Target, admin_url: str, consoles: Consoles, n: int) -> dict[str, Any]:
    """Open n feeds; time a stock change reaching all of them; CPU and memory of the worker."""
    pid = target.roots[0]
    rss_before = rss_mb(pid)
    started = time.monotonic()
    consoles.open(n)
    open_s = time.monotonic() - started
    deadline = time.monotonic() + 30
    while not consoles.all_see(lambda s: True) and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = _http_json(f"{admin_url}/admin/v1/campaigns/bench/stats")
    before = next(s for s in stats["skus"] if s["sku"] == "hot")["available"]
    cpu_before, watch_start = process_cpu_seconds(pid), time.monotonic()
    frames_before = consoles.frames
    _http_json(f"{admin_url}/admin/v1/campaigns/bench/skus/hot/stock", "POST", {"delta": 1})
    changed = time.monotonic()

    def sees(state: dict[str, Any]) -> bool:
        for c in state["campaigns"]:
            for s in c["skus"]:
                if s["sku"] == "hot":
                    return bool(s["available"] == before + 1)
        return False

    reached = None
    while time.monotonic() < changed + 30:
        if consoles.all_see(sees):
            reached = time.monotonic() - changed
            break
        time.sleep(0.02)
    # Keep the sale changing for a few ticks: the CPU of fanning each snapshot out.
    for _ in range(4):
        _http_json(f"{admin_url}/admin/v1/campaigns/bench/skus/hot/stock", "POST", {"delta": 1})
        time.sleep(TICK_MS / 1000)
    window = time.monotonic() - watch_start
    cpu = process_cpu_seconds(pid) - cpu_before
    frames = consoles.frames - frames_before
    result = {"viewers": n, "open_s": round(open_s, 2),
              "all_saw_change_s": None if reached is None else round(reached, 3),
              "gateway_cpu_share": round(cpu / window, 3), "frames_per_s": round(frames / window),
              "worker_rss_mb": round(rss_mb(pid), 1),
              "rss_per_viewer_kb": round((rss_mb(pid) - rss_before) * 1024 / max(1, n), 1)}
    consoles.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--viewers", default="0,1000")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    harness.sigterm_as_exit()
    idle = harness.idle_fraction()
    if idle < 0.8:
        console.log(f"[yellow]the machine is busy ({idle:.0%} idle): figures are noisy")
    runs: dict[str, list[dict[str, float]]] = {"none": [], "one": [], "many": []}
    with ExitStack() as stack, service(stack) as (target, admin_url):
        consoles = Consoles(admin_url)
        try:
            for r in range(args.rounds):
                for config in ("none", "one", "many"):
                    if config != "none":
                        consoles.open(1 if config == "one" else MANY)
                    console.log(f"round {r + 1}: {config} (consoles open: {len(consoles.tasks)})")
                    runs[config].append(run_load(target, args.seconds, f"{config}{r}"))
                    consoles.close()
            viewers = [capacity(target, admin_url, consoles, int(n))
                       for n in args.viewers.split(",") if n.strip()]
        finally:
            consoles.stop()
    report = _report(runs, viewers, idle)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"console-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    console.log(f"wrote {path}")


def _report(runs: dict[str, list[dict[str, float]]], viewers: list[dict[str, Any]],
            idle: float) -> dict[str, Any]:
    base = statistics.median(r["claims_per_s"] for r in runs["none"])
    table = Table(title="claims/s with the console's live feed open (median of rounds)")
    for col in ("consoles open", "claims/s", "ratio to none", "server CPU µs/claim", "p99 ms",
                "rounds"):
        table.add_column(col, justify="right")
    summary = {}
    for config, label in (("none", "0"), ("one", "1"), ("many", f"{MANY:,}")):
        rate = statistics.median(r["claims_per_s"] for r in runs[config])
        cpu = statistics.median(r["cpu_us_per_claim"] for r in runs[config])
        p99 = statistics.median(r["p99_ms"] for r in runs[config])
        summary[config] = {"claims_per_s": rate, "ratio": rate / base, "cpu_us_per_claim": cpu,
                           "p99_ms": p99, "runs": runs[config]}
        table.add_row(label, f"{rate:,.0f}", f"{rate / base:.3f}", f"{cpu:,.0f}", f"{p99:.1f}",
                      ", ".join(f"{r['claims_per_s']:,.0f}" for r in runs[config]))
    console.print(table)
    cap = Table(title="console feeds one worker holds (no claim load; a change every tick)")
    for col in ("viewers", "open in s", "change seen by all in s", "gateway CPU share",
                "frames/s sent", "worker RSS MB", "RSS per viewer KB"):
        cap.add_column(col, justify="right")
    for v in viewers:
        cap.add_row(*(str(v[k]) for k in ("viewers", "open_s", "all_saw_change_s",
                                          "gateway_cpu_share", "frames_per_s", "worker_rss_mb",
                                          "rss_per_viewer_kb")))
    console.print(cap)
    idle_share = next((v["gateway_cpu_share"] for v in viewers if v["viewers"] == 0), None)
    for v in viewers:
        if idle_share is not None and v["viewers"] and v["frames_per_s"]:
            v["gateway_us_per_frame"] = round(
                (v["gateway_cpu_share"] - idle_share) * 1e6 / v["frames_per_s"], 1)
            console.print(f"{v['viewers']:,} consoles: the gateway spends "
                          f"{v['gateway_us_per_frame']} µs of CPU per frame sent "
                          f"({v['gateway_cpu_share'] - idle_share:.1%} of a core over idle)")
    console.print(f"feed cost: one console {1 - summary['one']['ratio']:+.1%}, "
                  f"{MANY:,} consoles {1 - summary['many']['ratio']:+.1%} of claims/s "
                  f"(goal < 3%); machine idle before the run {idle:.0%}")
    return {"tick_ms": TICK_MS, "idle_before": idle, "load": summary, "viewers": viewers}


if __name__ == "__main__":
    main()
