"""The live feed's cost: claims/s with 1,000 SSE listeners open beside none, and how
soon every listener sees a sale sell out.

    python -m bench.live [--seconds 3] [--listeners 1000]

One `stampede serve` (one worker, embedded Valkey, SQLite, dev auth) and, in
one run:

1. a closed loop of claims (bench/loadgen.py) on campaign `bench`, nobody listening;
2. the same with `--listeners` streams open on `GET /v1/campaigns/bench/live`
   (held by a child process, `python -m bench.live --child`, that counts events);
3. `--listeners` streams on campaign `small`, whose stock the same closed loop
   claims out: a poller of `GET /v1/campaigns/small` (every 5 ms) notes when it
   first reads the sale sold out, each listener when its stream first says so.

Reports both claim rates and their ratio, the events the listeners received,
and the delay from sold-out to each listener seeing it (p50, p99, max; the
feed reads Redis every STAMPEDE_LIVE_TICK_MS, 250 by default). Writes
bench/results/live-<time>.json.
"""

import argparse
import asyncio
import functools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from rich.console import Console

from bench import harness, loadgen

console = Console(width=140)
CONCURRENCY = 64


def _sold_out(state: dict[str, Any]) -> bool:
    return state.get("state") == "sold_out" or all(
        s.get("sold_out", s.get("available") == 0) for s in state.get("skus", []))


# -- the listeners' process -------------------------------------------------------

class _Reader(asyncio.Protocol):
    """One stream, read as bytes: events are counted by their `data: ` lines, and the
    JSON is parsed only while waiting for sold-out. aiohttp's client, line by line,
    cost the listeners' process more CPU than the server's fan-out, and on two cores
    that CPU is taken from the server being measured."""

    def __init__(self, until_sold_out: bool) -> None:
        self.until_sold_out = until_sold_out
        self.events = 0
        self.sold: float | None = None
        self.first = asyncio.get_running_loop().create_future()
        self._carry = b""  # the end of the last read: a `data: ` line cut in two counts once
        self._lines = b""

    def data_received(self, data: bytes) -> None:
        joined = self._carry + data
        self.events += joined.count(b"\ndata: ")
        self._carry = joined[-6:]
        if self.events and not self.first.done():
            self.first.set_result(None)
        if self.until_sold_out and self.sold is None:
            self._lines += data
            cut = self._lines.rfind(b"\n") + 1
            complete, self._lines = self._lines[:cut], self._lines[cut:]
            if b'"sold_out":true' in complete:
                for line in complete.split(b"\n"):
                    if line.startswith(b"data: ") and _sold_out(json.loads(line[6:])):
                        self.sold = time.time()
                        break

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError("stream closed before its first event"))


def _same(reader: _Reader) -> _Reader:
    return reader


async def _listen(url: str, n: int, seconds: float, until_sold_out: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    parsed = urllib.parse.urlsplit(url)
    request = (f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
    readers: list[_Reader] = []
    transports: list[asyncio.Transport] = []
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    for _ in range(n):
        reader = _Reader(until_sold_out)
        transport, _ = await loop.create_connection(functools.partial(_same, reader), host,
                                                    port)
        transport.write(request)
        readers.append(reader)
        transports.append(transport)
    await asyncio.wait_for(asyncio.gather(*(r.first for r in readers)), 60)
    print("ready", flush=True)
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if until_sold_out and all(r.sold is not None for r in readers):
            break
        await asyncio.sleep(0.05)
    for transport in transports:
        transport.close()
    return {"events": sum(r.events for r in readers), "sold": [r.sold for r in readers]}


def child_main(url: str, n: int, seconds: float, until_sold_out: bool) -> None:
    result = asyncio.run(_listen(url, n, seconds, until_sold_out))
    print(json.dumps(result), flush=True)


@contextmanager
def listeners(url: str, n: int, seconds: float, until_sold_out: bool = False
              ) -> Iterator["subprocess.Popen[str]"]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.live", "--child", url, str(n),
                             str(seconds), "1" if until_sold_out else "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"listeners did not connect: {line!r}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.wait(seconds + 30)


def _result(proc: "subprocess.Popen[str]") -> dict[str, Any]:
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait(30)
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


# -- the run ------------------------------------------------------------------------

def claims(url: str, cid: str, seconds: float, tag: str) -> loadgen.LoadResult:
    result: loadgen.LoadResult = harness.closed_claims(url, cid, seconds, tag, CONCURRENCY)
    return result


def _watch_sold_out(url: str, stop: threading.Event, found: list[float]) -> None:
    while not stop.is_set():
        with urllib.request.urlopen(url, timeout=5) as resp:
            if _sold_out(json.loads(resp.read())):
                found.append(time.time())
                return
        time.sleep(0.005)


TRICKLE_S = 4.0
"""How long the trickle runs: a claim every 100 ms, so the feed has a change each tick."""


def _trickle(url: str, seconds: float, tag: str) -> int:
    """One claim every 100 ms for `seconds`, each a new user: the campaign changes every
    feed tick while the server does almost nothing else."""
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        req = urllib.request.Request(url, method="POST", data=b'{"sku":"hot","qty":1}',
                                     headers={"X-User-Id": f"{tag}-{sent}",
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()
        sent += 1
        time.sleep(0.1)
    return sent


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (the gateway, without its children:
    the persister catching up after a burst would drown the feed's cost)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(seconds: float, n: int) -> dict[str, Any]:
    with harness.stampede_serve(prefix="bench-live-") as svc:
        base, admin = svc.url, svc.admin_url
        harness.admin_json(f"{admin}/admin/v1/campaigns/bench", "PUT",
                           msgspec.to_builtins(harness.open_sale(50_000_000, per_user=2)))
        cpu: dict[str, float] = {}
        cpu_s: dict[str, float] = {}

        def measured(tag: str) -> loadgen.LoadResult:
            """A closed loop, and the server's CPU (its whole process tree) per claim."""
            before = harness.tree_cpu_seconds([svc.pid])
            result = claims(base, "bench", seconds, tag)
            cpu_s[tag] = harness.tree_cpu_seconds([svc.pid]) - before
            cpu[tag] = cpu_s[tag] * 1e6 / max(1, result.ok)
            return result

        console.log("claims, nobody listening")
        quiet = measured("quiet")
        console.log(f"claims, {n} listeners")
        with listeners(f"{base}/v1/campaigns/bench/live", n, seconds + 5) as proc:
            child_before = harness.tree_cpu_seconds([proc.pid])
            loud = measured("loud")
            child_cores = (harness.tree_cpu_seconds([proc.pid]) - child_before) / seconds
        heard = _result(proc)
        console.log("claims, nobody listening again (the machine's drift)")
        quiet2 = measured("quiet2")
        # Stock the loop sells out in about a quarter of the run at the rate with
        # listeners (half was too close: on a busy machine the sale did not sell out).
        stock = max(100, int(loud.ok_throughput * seconds / 4))
        harness.admin_json(f"{admin}/admin/v1/campaigns/small", "PUT",
                           msgspec.to_builtins(harness.open_sale(stock, per_user=2)))
        console.log(f"sell-out of {stock} units, {n} listeners")
        stop, found = threading.Event(), []  # type: ignore[var-annotated]
        with listeners(f"{base}/v1/campaigns/small/live", n, seconds + 10,
                       until_sold_out=True) as proc:
            watcher = threading.Thread(target=_watch_sold_out, args=(
                f"{base}/v1/campaigns/small", stop, found), daemon=True)
            watcher.start()
            claims(base, "small", seconds, "sell")
            watcher.join(10)
            stop.set()
        sold = _result(proc)["sold"]
        # The feed's own cost, beside no listener, with the claim load left out: the
        # gateway's CPU over a trickle that changes the campaign every tick.
        console.log(f"trickle of claims, nobody listening, then {n} listeners")
        trickle_url = f"{base}/v1/campaigns/bench/claims"
        before = _process_cpu(svc.pid)
        _trickle(trickle_url, TRICKLE_S, "t0")
        idle_cpu = _process_cpu(svc.pid) - before
        with listeners(f"{base}/v1/campaigns/bench/live", n, TRICKLE_S + 3) as proc:
            before = _process_cpu(svc.pid)
            _trickle(trickle_url, TRICKLE_S, "t1")
            busy_cpu = _process_cpu(svc.pid) - before
        frames = _result(proc)["events"] - n  # beyond each stream's first
    # The server CPU the listeners cost: what the loud run spent beyond its claims at
    # the quiet runs' CPU per claim, per second of load (1.0 is one core).
    per_claim = (cpu_s["quiet"] + cpu_s["quiet2"]) / max(1, quiet.ok + quiet2.ok)
    feed_cores = (cpu_s["loud"] - loud.ok * per_claim) / seconds
    seen = [t for t in sold if t is not None]
    delays = np.array([max(0.0, t - found[0]) * 1000 for t in seen]) if found else np.empty(0)
    return {
        "seconds": seconds, "listeners": n,
        "claims_per_s": {"no listener": quiet.ok_throughput, "listeners": loud.ok_throughput,
                     "no listener again": quiet2.ok_throughput,
                     "ratio": loud.ok_throughput / max(
                         1.0, (quiet.ok_throughput + quiet2.ok_throughput) / 2)},
        "server_cpu_us_per_claim": cpu,
        "listeners_server_cpu_cores": feed_cores,
        "listeners_process_cpu_cores": child_cores,
        "trickle": {"seconds": TRICKLE_S, "gateway_cpu_s_no_listener": idle_cpu,
                "gateway_cpu_s_listeners": busy_cpu, "frames_sent": frames,
                "gateway_cpu_us_per_frame": (busy_cpu - idle_cpu) * 1e6 / max(1, frames),
                "listeners_cpu_cores": (busy_cpu - idle_cpu) / TRICKLE_S},
        "events_received": heard["events"],
        "sold_out_stock": stock, "listeners_that_saw_sold_out": len(seen),
        "sold_out_to_listener_ms": {
        "p50": float(np.percentile(delays, 50)) if len(delays) else None,
        "p99": float(np.percentile(delays, 99)) if len(delays) else None,
        "max": float(delays.max()) if len(delays) else None},
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, n, seconds, until = sys.argv[2:6]
        child_main(url, int(n), float(seconds), until == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    harness.sigterm_as_exit()
    idle = harness.idle_or_warn(console)
    report = {"idle_before": idle, **run(args.seconds, args.listeners)}
    c, d = report["claims_per_s"], report["sold_out_to_listener_ms"]
    harness.report_table(console, "the live feed beside no listener (same run)", (
        ("claims/s, no listener (before / after)",
         f"{c['no listener']:,.0f} / {c['no listener again']:,.0f}"),
        (f"claims/s, {args.listeners} listeners", f"{c['listeners']:,.0f}"),
        ("ratio listeners / none (mean of both)", f"{c['ratio']:.2f}"),
        ("server CPU µs/claim: none / listeners / none",
         " / ".join(f"{report['server_cpu_us_per_claim'][k]:,.0f}"
                    for k in ("quiet", "loud", "quiet2"))),
        ("server CPU the listeners cost (cores, 1.0 = one)",
         f"{report['listeners_server_cpu_cores']:.3f}"),
        ("the listeners' own process (cores, same machine)",
         f"{report['listeners_process_cpu_cores']:.3f}"),
        ("trickle: frames sent / gateway CPU µs per frame",
         f"{report['trickle']['frames_sent']:,} / "
         f"{report['trickle']['gateway_cpu_us_per_frame']:,.1f}"),
        ("trickle: gateway CPU of the listeners (cores)",
         f"{report['trickle']['listeners_cpu_cores']:.3f}"),
        ("events received by the listeners", f"{report['events_received']:,}"),
        ("listeners that saw sold-out",
         f"{report['listeners_that_saw_sold_out']:,} / {args.listeners:,}"),
        ("sold-out → listener p50 / p99 / max ms",
         " / ".join(f"{d[k]:,.0f}" if d[k] is not None else "-"
                    for k in ("p50", "p99", "max")))))
    harness.write_report(console, args.out, "live", report)


if __name__ == "__main__":
    main()
