"""Process plumbing for the benchmarks: ports, services, CPU accounting, an engine harness.

A throwaway PostgreSQL comes from `stampede.runtime.postgres` (re-exported here).

Everything started here is stopped by its pid on every exit path: the context
managers stop in `finally`, an atexit hook catches what is still running at
interpreter exit, `sigterm_as_exit()` turns SIGTERM into SystemExit so that
`finally` runs, and services (SIGTERM) and the postmaster (SIGQUIT) get a
parent-death signal from the kernel if this process is killed outright; the
temp dir such a kill leaves behind is swept by a later `start_postgres`.

The parent-death signal fires when the *thread* that started the child exits:
start services and clusters from the main thread or another long-lived one.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stampede.runtime.ports import free_port  # noqa: F401 (re-exported)
from stampede.runtime.postgres import (  # noqa: F401 (re-exported)
    PgCluster,
    pg_bin_dir,
    postgres,
)

if TYPE_CHECKING:
    from stampede import Engine
    from stampede.domain.models import CampaignSpec

_PR_SET_PDEATHSIG = 1
_live_services: dict[int, Service] = {}
_registry_lock = threading.Lock()


# --------------------------------------------------------------------------- ports

def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} not accepting after {timeout}s") from None
            time.sleep(0.05)


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True if an HTTP server answers a GET at `url` with any status (405 counts)."""
    rest = url.split("://", 1)[-1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host or hostport, int(port or 80), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def idle_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs idle over `seconds` (from /proc/stat). Run it before a
    benchmark: on a 2-core box anything else running skews every figure."""
    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return vals[3] + vals[4], sum(vals)  # idle + iowait, total
    i0, t0 = snap()
    time.sleep(seconds)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


def sigterm_as_exit() -> None:
    """Make SIGTERM raise SystemExit in the main thread, so `finally` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def _raise(signum: int, _frame: object) -> None:
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, _raise)


# --------------------------------------------------------------------------- services

@dataclass
class Service:
    """A subprocess we started; `stop_service` ends it by pid."""
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None
    remove_log: bool = False  # a temp log we made: gone after a clean stop

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _pdeathsig() -> None:
    # Runs in the child between fork and exec. Note: fires when the *thread*
    # that forked exits, so start services from a long-lived thread.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_service(cmd: Sequence[str], *, ready_url: str | None = None,
                  ready_port: int | None = None, env: Mapping[str, str] | None = None,
                  cwd: str | os.PathLike[str] | None = None, timeout: float = 30.0,
                  log_path: str | os.PathLike[str] | None = None, name: str | None = None,
                  die_with_parent: bool = True) -> Service:
    """Start `cmd`, wait until `ready_url` answers HTTP (or `ready_port` accepts).

    Output goes to `log_path` (by default a temp file, removed after a clean
    stop) so a chatty service never blocks on a full pipe. Raises RuntimeError
    with the log tail if the process exits early, TimeoutError if it never
    becomes ready; either way it is stopped.
    """
    name = name or Path(cmd[0]).name
    own_log = log_path is None
    if log_path is None:
        fd, tmp = tempfile.mkstemp(prefix=f"stampede-{name}-", suffix=".log")
        os.close(fd)
        log_path = tmp
    path = Path(log_path)
    full_env = {**os.environ, **(env or {})}
    with open(path, "ab") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
                                preexec_fn=_pdeathsig if die_with_parent else None)
    svc = Service(name, proc, path, ready_url, remove_log=own_log)
    with _registry_lock:
        _live_services[proc.pid] = svc
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} before it was "
                                   f"ready; log {path}:\n{svc.log_tail()}")
            if ready_url is not None and http_answers(ready_url, timeout=0.5):
                break
            if ready_url is None and ready_port is not None:
                with contextlib.suppress(OSError), \
                        socket.create_connection(("127.0.0.1", ready_port), timeout=0.5):
                    break
            if ready_url is None and ready_port is None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {timeout}s; log {path}:\n"
                                   f"{svc.log_tail()}")
            time.sleep(0.05)
    except BaseException:
        svc.remove_log = False  # the error message points at it
        stop_service(svc)
        raise
    return svc


def stop_service(svc: Service, timeout: float = 10.0) -> int | None:
    """SIGTERM by pid, SIGKILL after `timeout`; returns the exit code. Idempotent."""
    proc = svc.proc
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    finally:
        with _registry_lock:
            _live_services.pop(proc.pid, None)
    if svc.remove_log and proc.returncode is not None:
        with contextlib.suppress(OSError):
            svc.log_path.unlink()
    return proc.returncode


@contextlib.contextmanager
def service(cmd: Sequence[str], **kwargs: object) -> Iterator[Service]:
    """`with service([...], ready_url=...) as svc:` — stopped on every way out."""
    svc = start_service(cmd, **kwargs)  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        stop_service(svc)


def python_module_cmd(module: str, *args: str | int) -> list[str]:
    """`python -m module args...` with this interpreter (the venv's)."""
    return [sys.executable, "-m", module, *(str(a) for a in args)]


@atexit.register
def _cleanup_at_exit() -> None:
    # Backstop for callers that did not use the context managers.
    for svc in list(_live_services.values()):
        with contextlib.suppress(Exception):
            stop_service(svc, timeout=3)


def tree_cpu_seconds(roots: Sequence[int]) -> float:
    """User + system CPU of these processes and all their descendants, from /proc.

    CPU per request is what a 2-core box can be fair about: throughput moves
    with whatever else runs, the work each request costs does not.
    """
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, wanted = 0.0, set(roots)
    for pid in cpu:
        p = pid
        while p > 1 and p not in wanted:
            p = parents.get(p, 0)
        if p in wanted:
            total += cpu[pid]
    return total


def tree_cpu_by_role(roots: Sequence[int]) -> dict[str, float]:
    """`tree_cpu_seconds` split by what each process is: `valkey`, `persister`
    (`stampede ... persist`), `postgres`, else `server` (the gateway or baseline).

    Processes that ended meanwhile are not counted (their CPU went to no one):
    read it around a run in which the tree does not change."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    wanted, roles = set(roots), dict[str, float]()
    for pid, seconds in cpu.items():
        p = pid
        while p > 1 and p not in wanted:
            p = parents.get(p, 0)
        if p in wanted:
            role = _role(pid)
            roles[role] = roles.get(role, 0.0) + seconds
    return roles


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "server"
    words = [a.decode(errors="replace") for a in argv if a]
    first = Path(words[0]).name if words else ""
    if "valkey" in first or "redis-server" in first:
        return "valkey"
    if first.startswith("postgres"):
        return "postgres"
    if "persist" in words[1:]:
        return "persister"
    if "deliver" in words[1:]:
        return "deliverer"
    return "server"


def open_sale(stock: int, per_user: int | None = 2, skus: Sequence[str] = ("hot",),
              **extra: Any) -> CampaignSpec:
    """An open campaign whose SKUs each get `stock` units now (the benchmarks' sale)."""
    import msgspec

    from stampede.domain.models import CampaignSpec

    now = datetime.now(UTC)
    limits = {"max_per_claim": 10, **({"per_user": per_user} if per_user is not None else {})}
    return msgspec.convert({
        "name": "bench", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(), "hold_ttl_s": 600, "limits": limits,
        "skus": [{"sku": s, "price": 1999,
                  "waves": [{"at": (now - timedelta(seconds=30)).isoformat(), "qty": stock}]}
                 for s in skus], **extra}, CampaignSpec)


async def drop_campaign(engine: Engine, cid: str) -> None:
    """Delete a campaign's keys and wait until Valkey has freed them: it frees them
    lazily, in a thread of its own, whose CPU would count to what is measured next."""
    import asyncio

    await engine.redis.delete(*await engine.redis.keys(f"{{c:{cid}}}*"))
    while int((await engine.redis.info("memory")).get("lazyfree_pending_objects", 0)):
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def fresh_engine() -> AsyncIterator[Engine]:
    """A started Engine on an embedded Valkey of its own (a temp dir); both gone after."""
    from stampede import Engine, Settings  # the harness also serves engine-less baselines
    from stampede.runtime.valkey import EmbeddedValkey

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp))
        url = server.start()
        try:
            engine = Engine.from_url(url, Settings(data_dir=Path(tmp)))
            await engine.start()
            try:
                yield engine
            finally:
                await engine.close()
        finally:
            server.stop()


def print_rounds(title: str, columns: Sequence[str], rates: Mapping[str, Sequence[float]],
                 baseline: str) -> dict[str, float]:
    """A table of per-round rates with each mode's median and its ratio to `baseline`'s;
    returns the medians. (rich is imported here: the harness also runs without it.)"""
    import statistics

    from rich.console import Console
    from rich.table import Table

    medians = {m: statistics.median(v) for m, v in rates.items()}
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for m, v in rates.items():
        table.add_row(m, f"{medians[m]:,.0f}", ", ".join(f"{x:,.0f}" for x in v),
                      f"{medians[m] / medians[baseline]:.2f}x")
    Console().print(table)
    return medians


# --------------------------------------------------------------------------- the service

ADMIN_TOKEN = "bench-admin-token"
"""The operator token of the services `stampede_serve` starts."""


def admin_json(url: str, method: str = "GET", body: Any = None) -> Any:
    """One admin API call with the bench's operator token; the answer's JSON."""
    import json
    import urllib.request

    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


@dataclass
class Served:
    """A `stampede serve` the bench started: its listeners, data dir and pid."""
    url: str
    admin_url: str
    data_dir: Path
    pid: int


@contextlib.contextmanager
def stampede_serve(extra_env: Mapping[str, str] | None = None,
                   prefix: str = "bench-") -> Iterator[Served]:
    """`stampede serve` on free ports in a temp data dir (dev auth, the bench's
    operator token, no STAMPEDE_* of the caller's environment), stopped after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        port, admin_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPEDE_")}
        env.update({"STAMPEDE_DATA_DIR": tmp, "STAMPEDE_DEV_AUTH": "1",
                    "STAMPEDE_ADMIN_TOKENS": f"operator:{ADMIN_TOKEN}", **(extra_env or {})})
        cmd = [str(Path(sys.executable).parent / "stampede"), "serve", "--port", str(port),
               "--admin-port", str(admin_port)]
        with service(cmd, ready_url=f"http://127.0.0.1:{port}/readyz", env=env,
                     name="stampede", timeout=60) as svc:
            yield Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}",
                         Path(tmp), svc.pid)


def closed_claims(url: str, cid: str, seconds: float, tag: str,
                  concurrency: int = 64) -> Any:
    """A closed loop of claims on campaign `cid` for `seconds` (a loadgen.LoadResult);
    `tag` makes the users its own."""
    from bench import loadgen

    return loadgen.run_closed(f"{url}/v1/campaigns/{cid}/claims", concurrency=concurrency,
                              duration=seconds, users=loadgen.Users(prefix=f"{tag}-"),
                              workers=1, progress=False)


def idle_or_warn(console: Any) -> float:
    """The machine's idle fraction now, with a warning when figures will be noisy."""
    idle = idle_fraction()
    if idle < 0.85:
        console.print(f"[yellow]the machine is only {idle:.0%} idle: figures will be noisy[/]")
    return idle


def report_table(console: Any, title: str, rows: Sequence[tuple[str, str]]) -> None:
    """Print a two-column table of figures."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def write_report(console: Any, out: Path, name: str, report: Mapping[str, Any]) -> Path:
    """`report` as JSON in `out`, named after the bench and the time."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {path}")
    return path


# --------------------------------------------------------------------------- engine loops

async def drive(seconds: float, concurrency: int,
                step: Callable[[int, int], Awaitable[bool]]) -> tuple[int, float]:
    """Run `step(worker, i)` from `concurrency` workers for `seconds` (a worker stops
    early when its step answers False); (steps done, steps per second)."""
    import asyncio

    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            if not await step(w, i):
                return
            done += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done, done / (time.perf_counter() - started)
