"""The end-to-end benchmark: Stampede beside its baselines, same load, one run.

    python -m bench.e2e [--seconds 5] [--out bench/results] [--only NAME,...]
                        [--compare OTHER_WORKTREE]

Starts on free loopback ports: the bare aiohttp ceiling, the naive claim
service (same Lua rules, one EVALSHA per request), the PostgreSQL row-lock
shop, and Stampede itself (`stampede serve`, embedded Valkey and SQLite) with
dev auth, with real JWT auth, and without metrics. Each gets the same closed
loop (peak throughput) and then an open loop at half its own peak (latency
without coordinated omission). Correctness is checked after every run. Then
Redis memory per user holding a claim is measured. Writes a table, a JSON
file and a PNG plot, and prints the goal ratios.

The server CPU per claim is also split by process (gateway `server`, `valkey`,
`persister`, webhook `deliverer`), measured once the service's children have
started. The goals table gives each goal, its figure and whether it is met.
`--only` runs the targets whose names contain one of the given words (e.g.
`--only bare,naive,jwt+metrics`; `=NAME` for that target alone); `--compare DIR` runs each
Stampede target a second time right after the first with the `stampede` of
another worktree's venv (`DIR/.venv/bin/stampede`, named "... (before)"):
before and after in one run, under the same load from the rest of the machine.
`--stages` times, inside each Stampede gateway during its open loops, where a
claim's time goes (bench/probe: the flush wait, the batch's trip, the event
loop's lateness, collector pauses) and prints them as a second table.
"""

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import harness, loadgen
from stampede import Engine, Settings
from stampede.runtime.valkey import EmbeddedValkey

console = Console(width=150)
SECRET = "bench-jwt-secret-0123456789-0123456789"
ADMIN = "bench-admin-token"
STOCK = 50_000_000
SKUS = tuple(f"s{i}" for i in range(64))
CONCURRENCY = 64
MAX_RATE = 25_000
"""Most claims/s any target reaches here: how many users' tokens to mint ahead."""


@dataclass
class Target:
    name: str
    url: str
    check: Callable[[int, int], dict[str, Any]]
    """Given the 201s so far and the slack (requests a closed loop left in flight, which
    the service may have served unseen), verify the service's accounting."""
    created: int = 0
    closed_runs: int = 0
    roots: list[int] = field(default_factory=list)
    """The processes that serve this target (their descendants count too): for CPU/claim."""
    headers_for: loadgen.HeadersFor | None = None
    user_header: str | None = "X-User-Id"
    results: dict[str, Any] = field(default_factory=dict)
    cpu_roles: bool = False
    """Split the CPU per claim by process (gateway, Valkey, persister)."""
    probe: Path | None = None
    """`--stages`: where the gateway (`roots[0]`) writes its stage timings (bench/probe)."""


def _http_json(url: str, method: str = "GET", body: dict[str, Any] | None = None,
               token: str | None = None) -> Any:
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


THROTTLE = {
    # Every check a claim of this load passes: each request is a new user on a
    # new device, all from loopback (one network), so the limiters and account
    # sets are written for every claim: the guard's full cost, no refusals.
    "user": {"per_s": 1, "burst": 3}, "device": {"per_s": 1, "burst": 3},
    "network": {"per_s": 100_000, "burst": 100_000},
    "campaign": {"per_s": 100_000, "burst": 100_000},
    "accounts_per_device": {"challenge_above": 3, "reject_above": 5}}


def _stampede_campaign(admin_url: str, throttled: bool) -> dict[str, Any]:
    import msgspec

    spec = msgspec.to_builtins(harness.open_sale(STOCK, per_user=2, skus=("hot", *SKUS)))
    # Only what is set: an older build (--compare) refuses fields it does not know.
    spec = {k: v for k, v in spec.items() if v is not None and not (k == "shards" and v == 1)}
    if throttled:
        spec["throttle"] = THROTTLE
    return _http_json(f"{admin_url}/admin/v1/campaigns/bench", "PUT", spec, ADMIN)


class _JwtAndDevice(loadgen.JwtBearer):
    """A bearer token and a device of one's own per user."""

    def __call__(self, user: str) -> dict[str, str]:
        return {**super().__call__(user), "X-Device-Id": f"dev-{user}"}


def _stampede_check(admin_url: str) -> Callable[[int, int], dict[str, Any]]:
    def check(created: int, slack: int) -> dict[str, Any]:
        stats = _http_json(f"{admin_url}/admin/v1/campaigns/bench/stats", token=ADMIN)
        held = sum(s["held"] for s in stats["skus"])
        # A closed loop stops with CONCURRENCY requests in flight: the engine
        # may have placed those holds, the load generator never counts them.
        ok = all(s["available"] >= 0 and s["available"] + s["held"] + s["sold"] == s["released"]
                 for s in stats["skus"]) and 0 <= held - created <= slack
        return {"ok": ok, "held": held, "answered_201": created}
    return check


PROBE = Path(__file__).parent / "probe"
"""bench/probe: its sitecustomize times a gateway's stages (`--stages`)."""
STAGES = False
"""`--stages`: probe each Stampede gateway during its open loops."""


@contextmanager
def stampede(stack: ExitStack, name: str, env: dict[str, str], throttled: bool = False,
             exe: Path | None = None) -> Iterator[Target]:
    data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-stampede-")))
    port, admin_port = harness.free_port(), harness.free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
    root = exe.parents[2] if exe else None  # DIR/.venv/bin/stampede: another build
    if root is not None:
        # Its own code only, in every process: `serve`'s children run `python -m`,
        # which would import from the working directory, and an editable install
        # may point elsewhere.
        full_env["PYTHONPATH"] = str(root)
    full_env.update({"STAMPEDE_DATA_DIR": str(data), "STAMPEDE_ADMIN_TOKENS": f"operator:{ADMIN}",
                     "STAMPEDE_JWT_SECRET": SECRET, **env})
    if STAGES:
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(PROBE), *([full_env["PYTHONPATH"]] if "PYTHONPATH" in full_env else [])])
        full_env["BENCH_PROBE_DIR"] = str(data)
    cmd = [str(exe or Path(os.sys.executable).parent / "stampede"), "serve", "--port", str(port),
           "--admin-port", str(admin_port), "--workers", "1"]
    with harness.service(cmd, ready_url=f"http://127.0.0.1:{port}/readyz", env=full_env,
                         name=name, timeout=60, cwd=root) as svc:
        admin_url = f"http://127.0.0.1:{admin_port}"
        _stampede_campaign(admin_url, throttled)
        _settled([svc.pid])
        jwt = env.get("STAMPEDE_DEV_AUTH") != "1"
        yield Target(name, f"http://127.0.0.1:{port}/v1/campaigns/bench/claims",
                     _stampede_check(admin_url),
                     headers_for=(_JwtAndDevice if throttled else loadgen.JwtBearer)(
                         SECRET, cache=1_000_000) if jwt else None,
                     user_header=None if jwt else "X-User-Id",
                     roots=[svc.pid], cpu_roles=True,  # its Valkey and persister are children
                     probe=data if STAGES else None)


def _settled(roots: list[int], quiet_s: float = 0.02, limit_s: float = 60.0) -> None:
    """Wait until the service's children have started. `serve` answers /readyz before
    its persister and webhook deliverer (children at nice 10) have imported their code:
    a second or more of CPU each, which the first run would otherwise charge to its
    claims (on a busy machine, seconds later)."""
    deadline = time.monotonic() + limit_s
    last = harness.tree_cpu_by_role(roots)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = harness.tree_cpu_by_role(roots)
        if all(now.get(r, 0.0) - last.get(r, 0.0) < quiet_s for r in ("persister", "deliverer")):
            return
        last = now
    console.print("[yellow]the service's children were still busy after start[/]")


def _users(target: Target, tag: str, count: int) -> loadgen.Users:
    """A fresh range of users for one phase (the per-user limit never bites), their
    JWTs minted before the clock starts: signing is the load generator's cost, and
    on two cores it would be taken from the server under test."""
    users = loadgen.Users(prefix=f"{tag}-")
    if isinstance(target.headers_for, loadgen.JwtBearer):
        for i in range(count):
            target.headers_for(f"{tag}-{i}")
    return users


def _run(target: Target, seconds: float, body: loadgen.BodyFor | bytes, label: str) -> None:
    common = dict(body=body, headers_for=target.headers_for, user_header=target.user_header,
                  workers=1, progress=False)
    console.log(f"{target.name}: {label} closed loop")
    # No warmup: its answers are not counted, and the check needs every 201.
    users = _users(target, f"{label[:4]}-peak", int(seconds * MAX_RATE))
    cpu_before = harness.tree_cpu_by_role(target.roots)
    peak = loadgen.run_closed(target.url, concurrency=CONCURRENCY, duration=seconds,
                              users=users, **common)  # type: ignore[arg-type]
    # The gateway's CPU is read at once; the persister's (and Valkey's, which serves
    # its reads) once the persister has drained the run's events: its whole share.
    # The answers count 2xx only.
    cpu_after = harness.tree_cpu_by_role(target.roots)
    if "persister" in cpu_after:
        cpu_after.update({k: v for k, v in _drained(target.roots).items()
                          if k in ("persister", "valkey")})
    claims = max(1, peak.status_counts.get(201, 0))
    by_role = {role: (cpu_after[role] - cpu_before.get(role, 0.0)) * 1e6 / claims
               for role in sorted(cpu_after)}
    cpu_us = sum(by_role.values())
    target.created += peak.status_counts.get(201, 0)
    target.closed_runs += 1
    rate = max(100.0, peak.ok_throughput / 2)
    console.log(f"{target.name}: {label} open loop at {rate:,.0f}/s")
    users = _users(target, f"{label[:4]}-half", int(seconds * rate * 1.1) + 100)
    if target.probe is not None:
        os.kill(target.roots[0], signal.SIGUSR1)  # the stage timings start afresh
    steady = loadgen.run_open(target.url, rate=rate, duration=seconds, connections=128,
                              users=users, **common)  # type: ignore[arg-type]
    stages = _stages(target) if target.probe is not None else None
    target.created += steady.status_counts.get(201, 0)
    target.results[label] = {
        "peak_ok_per_s": peak.ok_throughput, "peak_answers_per_s": peak.throughput,
        "server_cpu_us_per_claim": cpu_us, "server_cpu_us_by_process": by_role,
        "peak_latency_ms": peak.latency_ms, "peak_status": peak.status_counts,
        "open_rate": rate, "open_latency_ms": steady.latency_ms,
        "open_status": steady.status_counts, "open_unfinished": steady.unfinished,
        "open_stages": stages,
        "check": target.check(target.created, CONCURRENCY * target.closed_runs)}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _stages(target: Target, wait_s: float = 30.0) -> dict[str, dict[str, float]]:
    """The gateway's stage timings of the open loop just run (bench/probe), summarised."""
    assert target.probe is not None
    path = target.probe / f"probe-{target.roots[0]}.json"
    path.unlink(missing_ok=True)
    os.kill(target.roots[0], signal.SIGUSR2)
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            console.print(f"[yellow]{target.name}: no stage timings (is bench/probe loaded?)[/]")
            return {}
        time.sleep(0.05)
    samples: dict[str, list[float]] = json.loads(path.read_text())
    gc_ms = [v for k in ("gc0_ms", "gc1_ms", "gc2_ms") for v in samples[k]]
    out = {name: {"n": len(v), "p50": _pct(v, 0.5), "p99": _pct(v, 0.99),
                  "p99.9": _pct(v, 0.999), "max": max(v, default=0.0), "sum": sum(v)}
           for name, v in (*samples.items(), ("gc_ms", gc_ms))}
    return out


def _stages_table(targets: list[Target]) -> None:
    table = Table(title="inside the gateway, open loop at half peak (bench/probe; ms)")
    for col in ("service", "flush wait p50", "p99", "batch trip p50", "p99", "batch size p50",
                "loop lag p99", "p99.9", "max", "gc pauses", "gc ms total", "gc max"):
        table.add_column(col, justify="right")
    for t in targets:
        s = t.results["hot"].get("open_stages")
        if not s:
            continue
        table.add_row(t.name, f"{s['wait_ms']['p50']:.2f}", f"{s['wait_ms']['p99']:.2f}",
                      f"{s['trip_ms']['p50']:.2f}", f"{s['trip_ms']['p99']:.2f}",
                      f"{s['size']['p50']:.0f}", f"{s['lag_ms']['p99']:.2f}",
                      f"{s['lag_ms']['p99.9']:.2f}", f"{s['lag_ms']['max']:.2f}",
                      f"{s['gc_ms']['n']}", f"{s['gc_ms']['sum']:.1f}",
                      f"{s['gc_ms']['max']:.2f}")
    if table.row_count:
        console.print(table)


def _drained(roots: list[int], quiet_s: float = 0.015, limit_s: float = 20.0
             ) -> dict[str, float]:
    """CPU by process once the persister is idle (under `quiet_s` of CPU in 0.25 s)."""
    deadline = time.monotonic() + limit_s
    last = harness.tree_cpu_by_role(roots)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = harness.tree_cpu_by_role(roots)
        if now.get("persister", 0.0) - last.get("persister", 0.0) < quiet_s:
            return now
        last = now
    console.print("[yellow]the persister was still busy: its CPU per claim is a floor[/]")
    return last


def _memory_per_held_user(users: int = 20_000) -> dict[str, Any]:
    """Bytes of Redis per user holding one claim, by structure (MEMORY USAGE, exact).

    `used_memory` moves with AOF and client buffers; the sum of each key's
    MEMORY USAGE is what the state itself costs. The event stream is counted
    apart: the persister trims it once the events are in the store.
    """
    async def measure() -> dict[str, Any]:
        async with harness.fresh_engine() as engine:
            await engine.define_campaign("mem", harness.open_sale(10**6, per_user=2, skus=("tee",)))
            before = {k: int(await engine.redis.memory_usage(k, samples=0) or 0)
                      for k in await engine.redis.keys("{c:mem}*")}
            await asyncio.gather(*(engine.claim("mem", f"user{i:07d}", "tee")
                                   for i in range(users)))
            by_key = {}
            for k in await engine.redis.keys("{c:mem}*"):
                grown = int(await engine.redis.memory_usage(k, samples=0) or 0) - before.get(k, 0)
                if grown > users:  # at least a byte a user: the per-user structures
                    by_key[k.split(":", 2)[-1]] = grown / users
            stream = by_key.pop("events", 0.0)
            return {"users": users, "state_per_user": sum(by_key.values()),
                    "by_structure": by_key, "events_per_user": stream}
    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--only", default="",
                        help="comma-separated words: run the targets whose names contain "
                             "one (=NAME: that target alone, and its --compare twin)")
    parser.add_argument("--skip-memory", action="store_true",
                        help="do not measure Redis bytes per user holding a claim")
    parser.add_argument("--compare", type=Path, default=None,
                        help="another worktree: each Stampede target again with its stampede")
    parser.add_argument("--stages", action="store_true",
                        help="time the stages inside each Stampede gateway (bench/probe)")
    args = parser.parse_args()
    global STAGES
    STAGES = args.stages
    harness.sigterm_as_exit()
    idle = harness.idle_fraction()
    if idle < 0.85:
        console.print(f"[yellow]the machine is only {idle:.0%} idle: figures will be noisy[/]")
    hot = b'{"sku":"hot","qty":1}'

    def many(user: str) -> bytes:
        return b'{"sku":"%s","qty":1}' % SKUS[hash(user) % len(SKUS)].encode()

    targets: list[Target] = []
    # Each service runs alone while it is measured: idle neighbours with
    # their own timers would take CPU from whoever is being measured.
    words = [w.strip() for w in args.only.split(",") if w.strip()]
    for name, make in _services(args.compare):
        if words and not any(name in (w[1:], f"{w[1:]} {BEFORE}") if w.startswith("=")
                             else w in name for w in words):
            continue
        with ExitStack() as stack:
            target = make(stack, name)
            targets.append(target)
            _run(target, args.seconds, hot, "hot")
            if name in ("naive EVALSHA", OURS, f"{OURS} {BEFORE}"):
                _run(target, args.seconds, many, "many skus")
    memory: dict[str, Any] = {"by_structure": {}}
    if not args.skip_memory:
        try:
            memory = _memory_per_held_user()
        except Exception as exc:  # a timeout on a swamped machine: keep the runs' figures
            console.print(f"[yellow]memory per held user not measured: {exc!r}[/]")
    report = _report(targets, memory, idle)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"e2e-{stamp}.json").write_text(json.dumps(report, indent=2, default=str))
    _plot(targets, args.out / f"e2e-{stamp}.png")
    console.print(f"wrote {args.out}/e2e-{stamp}.json and .png")


def _bare(stack: ExitStack, name: str) -> Target:
    port = harness.free_port()
    svc = stack.enter_context(harness.service(
        harness.python_module_cmd("bench.baselines.bare_http", "--port", port),
        ready_url=f"http://127.0.0.1:{port}/healthz", name="bare"))
    return Target(name, f"http://127.0.0.1:{port}/v1/campaigns/bench/claims",
                  lambda n, slack: {"ok": True}, roots=[svc.pid])


def _naive(stack: ExitStack, name: str, jwt: bool = False) -> Target:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    valkey = EmbeddedValkey(tmp)
    redis_url = valkey.start()
    stack.callback(valkey.stop)
    asyncio.run(_define_naive(redis_url))
    port = harness.free_port()
    svc = stack.enter_context(harness.service(
        harness.python_module_cmd("bench.baselines.naive_claims", "--port", port,
                                  "--redis-url", redis_url,
                                  *(("--jwt-secret", SECRET) if jwt else ())),
        ready_url=f"http://127.0.0.1:{port}/healthz", name="naive"))
    return Target(name, f"http://127.0.0.1:{port}/v1/campaigns/bench/claims",
                  lambda n, slack: asyncio.run(_naive_check(redis_url, n, slack)),
                  roots=[svc.pid, valkey.process.pid], cpu_roles=True,
                  headers_for=loadgen.JwtBearer(SECRET, cache=1_000_000) if jwt else None,
                  user_header=None if jwt else "X-User-Id")


def _pg(stack: ExitStack, name: str) -> Target:
    pg = stack.enter_context(harness.postgres())
    port = harness.free_port()
    svc = stack.enter_context(harness.service(
        harness.python_module_cmd("bench.baselines.pg_rowlock", "--port", port,
                                  "--dsn", pg.dsn, "--setup", "--campaign", "bench",
                                  "--sku", f"hot={STOCK}", "--per-user", "2"),
        ready_url=f"http://127.0.0.1:{port}/healthz", name="pg", timeout=60))
    url = f"http://127.0.0.1:{port}"
    postmaster = pg.pid or (pg.proc.pid if pg.proc else None)
    return Target(name, f"{url}/v1/campaigns/bench/claims",
                  lambda n, slack: _http_json(f"{url}/admin/check?campaign=bench"),
                  roots=[svc.pid, *([postmaster] if postmaster else [])])


BEFORE = "(before)"
"""Suffix of the targets run with `--compare`'s other worktree."""


def _services(compare: Path | None = None
              ) -> list[tuple[str, Callable[[ExitStack, str], Target]]]:
    def ours(env: dict[str, str], throttled: bool = False, exe: Path | None = None
             ) -> Callable[[ExitStack, str], Target]:
        return lambda stack, name: stack.enter_context(
            stampede(stack, name, env, throttled, exe))

    configs: list[tuple[str, dict[str, str], bool]] = [
        ("stampede jwt+metrics", {}, False),
        ("stampede jwt+metrics+throttle", {}, True),
        ("stampede dev auth", {"STAMPEDE_DEV_AUTH": "1"}, False),
        ("stampede dev, no metrics", {"STAMPEDE_DEV_AUTH": "1", "STAMPEDE_METRICS": "0"}, False),
        ("stampede dev, persister off", {"STAMPEDE_DEV_AUTH": "1",
                                         "STAMPEDE_PERSISTER": "0"}, False),
    ]
    found: list[tuple[str, Callable[[ExitStack, str], Target]]] = [
        ("bare aiohttp", _bare),
        ("naive EVALSHA", _naive),
        ("naive EVALSHA + JWT", lambda stack, name: _naive(stack, name, jwt=True)),
        ("postgres row lock", _pg),
    ]
    for name, env, throttled in configs:
        found.append((name, ours(env, throttled)))
        if compare is not None:
            found.append((f"{name} {BEFORE}",
                          ours(env, throttled, compare / ".venv" / "bin" / "stampede")))
    return found


async def _define_naive(url: str) -> None:
    engine = Engine.from_url(url, Settings())
    try:
        await engine.start()
        await engine.define_campaign("bench", harness.open_sale(STOCK, per_user=2,
                                                            skus=("hot", *SKUS)))
    finally:
        await engine.close()


async def _naive_check(url: str, created: int, slack: int) -> dict[str, Any]:
    engine = Engine.from_url(url, Settings())
    try:
        stats = await engine.stats("bench")
        assert stats is not None
        held = sum(s.held for s in stats.skus)
        return {"ok": 0 <= held - created <= slack, "held": held, "answered_201": created}
    finally:
        await engine.close()


ROLES = ("server", "valkey", "persister", "deliverer")
"""The processes of a target, as harness.tree_cpu_by_role names them (server: the gateway)."""
OURS = "stampede jwt+metrics"
"""The target the goals are about: a durable claim with JWT, metrics and the persister."""


def _report(targets: list[Target], memory: dict[str, Any], idle: float) -> dict[str, Any]:
    table = Table(title="claims through HTTP, hot SKU (1 server process, 1 load process); "
                        "CPU µs per successful claim by process")
    for col in ("service", "peak ok/s", "CPU µs/claim", "gateway", "valkey", "persister",
                "deliverer", "p50 ms", "p99 ms", "open rate", "p50", "p99", "p99.9",
                "correct"):
        table.add_column(col, justify="right")
    for t in targets:
        r = t.results["hot"]
        lo, hi = r["open_latency_ms"], r["peak_latency_ms"]
        roles = r["server_cpu_us_by_process"] if t.cpu_roles else {}
        table.add_row(t.name, f"{r['peak_ok_per_s']:,.0f}", f"{r['server_cpu_us_per_claim']:.0f}",
                      *(f"{roles[k]:.0f}" if k in roles else "" for k in ROLES),
                      f"{hi['p50']:.2f}", f"{hi['p99']:.2f}",
                      f"{r['open_rate']:,.0f}/s", f"{lo['p50']:.2f}", f"{lo['p99']:.2f}",
                      f"{lo['p99.9']:.2f}",
                      str(all(x["check"].get("ok") for x in t.results.values())))
    console.print(table)
    _stages_table(targets)
    by = {t.name: t.results for t in targets}
    goals = _goals(by, memory)
    ratios = Table(title=f"goals ({OURS}: a durable claim with JWT, metrics and the persister)")
    for col, justify in (("measure", "left"), ("goal", "right"), ("value", "right"),
                         ("met", "center")):
        ratios.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, (goal, value, met) in goals.items():
        ratios.add_row(name, goal, f"{value:,.2f}",
                       "" if met is None else "[green]yes[/]" if met else "[red]no[/]")
    console.print(ratios)
    if idle < 0.85:
        console.print(f"[yellow]the machine was {idle:.0%} idle at the start: throughput "
                      "and latency measure the machine as much as the service; CPU per "
                      "claim is the steadier figure[/]")
    if memory["by_structure"]:
        console.print("Redis bytes per user holding a claim, by structure: " + ", ".join(
            f"{k} {v:.0f}" for k, v in memory["by_structure"].items()))
    return {"when": time.time(), "idle_before": idle, "machine": " ".join(os.uname()),
            "cpus": os.cpu_count(), "targets": by,
            "goals": {k: v for k, (_, v, _) in goals.items()},
            "goals_met": {k: m for k, (_, _, m) in goals.items()}, "memory": memory}


Goal = tuple[str, float, bool | None]
"""(the goal as text, the value, met: None when it is a figure without a goal)"""


def _goals(by: dict[str, dict[str, Any]], memory: dict[str, Any]) -> dict[str, Goal]:
    """The goal figures of the targets that ran (a `--only` run has fewer)."""
    def peak(name: str) -> float | None:
        return by[name]["hot"]["peak_ok_per_s"] if name in by else None

    def of(name: str, key: str, pct: str | None = None) -> float | None:
        if name not in by:
            return None
        value = by[name]["hot"][key]
        return value[pct] if pct else value  # type: ignore[no-any-return]

    def cpu(name: str) -> float | None:
        return of(name, "server_cpu_us_per_claim")

    def by_role(name: str) -> dict[str, float]:
        return by[name]["hot"]["server_cpu_us_by_process"] if name in by else {}

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    ours = peak(OURS)
    roles = by_role(OURS)
    found: dict[str, tuple[str, float | None, Callable[[float], bool] | None]] = {
        "CPU µs per claim, whole process tree": ("<= 110", cpu(OURS), lambda v: v <= 110),
        **{f"  of which {'gateway' if k == 'server' else k}": ("", roles.get(k), None)
           for k in ROLES if k in roles},
        "vs bare aiohttp, peak claims/s": (">= 0.45", ratio(ours, peak("bare aiohttp")),
                                           lambda v: v >= 0.45),
        "vs bare aiohttp, CPU per request / CPU per claim": (
            ">= 0.45", ratio(cpu("bare aiohttp"), cpu(OURS)), lambda v: v >= 0.45),
        "vs naive EVALSHA + JWT, peak claims/s": (
            ">= 1.6", ratio(ours, peak("naive EVALSHA + JWT")), lambda v: v >= 1.6),
        "vs naive EVALSHA + JWT, its CPU per claim / ours": (
            ">= 1.6", ratio(cpu("naive EVALSHA + JWT"), cpu(OURS)), lambda v: v >= 1.6),
        "p99 ms at half peak, open loop": ("< 10", of(OURS, "open_latency_ms", "p99"),
                                           lambda v: v < 10),
        "p99.9 ms at half peak, open loop": ("< 20", of(OURS, "open_latency_ms", "p99.9"),
                                             lambda v: v < 20),
        "vs naive EVALSHA, its own header auth": ("", ratio(ours, peak("naive EVALSHA")), None),
        "dev auth vs naive EVALSHA (both header auth)":
            ("", ratio(peak("stampede dev auth"), peak("naive EVALSHA")), None),
        "vs postgres row lock": (">= 20", ratio(ours, peak("postgres row lock")),
                                 lambda v: v >= 20),
        "with throttling too, vs bare ceiling":
            ("", ratio(peak("stampede jwt+metrics+throttle"), peak("bare aiohttp")), None),
        "throttle on / off (jwt+metrics)":
            ("", ratio(peak("stampede jwt+metrics+throttle"), ours), None),
        "p99 ms at half peak, with throttling":
            ("", of("stampede jwt+metrics+throttle", "open_latency_ms", "p99"), None),
        "jwt+metrics / dev auth": ("", ratio(ours, peak("stampede dev auth")), None),
        "metrics on / off (dev auth)":
            ("", ratio(peak("stampede dev auth"), peak("stampede dev, no metrics")), None),
        "many skus / hot (stampede jwt)": ("", ratio(
            by[OURS]["many skus"]["peak_ok_per_s"] if OURS in by else None, ours), None),
        "redis bytes per user holding a claim": ("< 200", memory.get("state_per_user"),
                                                 lambda v: v < 200),
        "stream bytes per claim event (until persisted and trimmed)":
            ("", memory.get("events_per_user"), None),
    }
    before = f"{OURS} {BEFORE}"
    if before in by:
        found["after / before, peak (jwt+metrics)"] = ("", ratio(ours, peak(before)), None)
        found["after / before, CPU per claim (jwt+metrics)"] = (
            "", ratio(cpu(OURS), cpu(before)), None)
        for k in ROLES:
            a, b = roles.get(k), by_role(before).get(k)
            if a is not None and b:
                name = "gateway" if k == "server" else k
                found[f"  after / before, {name} CPU per claim"] = ("", a / b, None)
    return {k: (goal, v, None if met is None else met(v))
            for k, (goal, v, met) in found.items() if v is not None}


def _plot(targets: list[Target], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t.name for t in targets]
    rows = range(len(names))
    peaks = [t.results["hot"]["peak_ok_per_s"] for t in targets]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    a.barh(rows, peaks, color="#3a7")
    a.set_yticks(list(rows), names)
    a.set_xlabel("successful claims per second (closed loop, peak)")
    a.invert_yaxis()
    # One bar per percentile, side by side (overlaid, the longest would hide the rest).
    for i, (key, colour) in enumerate((("p50", "#9cd"), ("p99", "#36a"), ("p99.9", "#124"))):
        b.barh([r + (i - 1) * 0.27 for r in rows],
               [t.results["hot"]["open_latency_ms"][key] for t in targets],
               height=0.27, color=colour, label=key)
    b.set_xscale("log")
    b.set_xlabel("latency ms at half of each one's peak (open loop), log scale")
    b.axvline(10, color="#c33", linewidth=1, linestyle="--", label="10 ms goal (p99)")
    b.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Stampede vs baselines, hot SKU, same machine, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
