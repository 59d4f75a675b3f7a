"""Process plumbing for the end-to-end benchmark: ports, services, a throwaway PostgreSQL.

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
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from engine import Engine

PG_USER = "stampedepg"
_PR_SET_PDEATHSIG = 1
_live_services: dict[int, Service] = {}
_live_clusters: dict[str, PgCluster] = {}
_registry_lock = threading.Lock()


# --------------------------------------------------------------------------- ports

def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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


# --------------------------------------------------------------------------- postgres

@dataclass
class PgCluster:
    """A throwaway cluster: data and socket under `root`, listening on 127.0.0.1:`port`."""
    root: Path
    port: int
    user: str
    bin_dir: Path
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "postgres.log"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def dsn(self) -> str:
        """TCP over loopback, as a web shop's app server would connect."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    @property
    def socket_dsn(self) -> str:
        """Unix socket in the cluster's own directory (a little faster)."""
        return f"postgresql://{self.user}@/postgres?host={self.socket_dir}&port={self.port}"


def pg_bin_dir() -> Path:
    for cand in (os.environ.get("STAMPEDE_PG_BIN"), "/usr/local/bin",
                 "/usr/lib/postgresql/15/bin"):
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise FileNotFoundError("initdb/pg_ctl not found (set STAMPEDE_PG_BIN)")


def ensure_pg_user(name: str = PG_USER) -> pwd.struct_passwd:
    """The OS user PostgreSQL runs as: root is refused by postgres.

    Not root: the current user. Root: `name`, created as a system user if
    missing; if that cannot be done, an existing `postgres` or `nobody`.
    """
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    res = subprocess.run([useradd, "--system", "--no-create-home", "--user-group",
                          "--shell", "/usr/sbin/nologin", name],
                         capture_output=True, text=True, timeout=30, check=False)
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    for fallback in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(fallback)
    raise RuntimeError(f"no non-root user for postgres; useradd said: {res.stderr.strip()}")


def _as_user(pw: pwd.struct_passwd, cmd: Sequence[str], *, timeout: float,
             cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
           "LANG": "C", "LC_ALL": "C"}
    root = os.geteuid() == 0
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          check=False, env=env, cwd=cwd, user=pw.pw_uid if root else None,
                          group=pw.pw_gid if root else None, extra_groups=[] if root else None)


def _drop_to(pw: pwd.struct_passwd, deathsig: int | None) -> Callable[[], None]:
    """preexec_fn: become the postgres user, then arm the parent-death signal
    (in that order: changing the uid clears PDEATHSIG)."""
    def run() -> None:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
        if deathsig is not None:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, deathsig)
    return run


def start_postgres(*, port: int | None = None, base_dir: str | os.PathLike[str] | None = None,
                   settings: Mapping[str, str] | None = None, timeout: float = 60.0,
                   launcher: Literal["child", "pg_ctl"] = "child") -> PgCluster:
    """initdb and start a fresh cluster in a temp dir; trust auth, loopback only.

    launcher="child" (default) runs the postmaster as our own child with a
    parent-death signal, so it goes away even if this process is SIGKILLed;
    "pg_ctl" daemonizes it with `pg_ctl start -w`, which then outlives a
    SIGKILLed harness (the atexit hook covers normal exits only).
    `settings` are extra server settings (e.g. {"max_connections": "300"}).
    The temp dir must be reachable by the postgres user: the default under
    /tmp is; a dir under /root is not.
    """
    pw = ensure_pg_user()
    bin_dir = pg_bin_dir()
    _sweep_stale(Path(base_dir or tempfile.gettempdir()))
    root = Path(tempfile.mkdtemp(prefix="stampede-pg-", dir=base_dir))
    cluster = PgCluster(root, port or free_port(), pw.pw_name, bin_dir)
    with _registry_lock:
        _live_clusters[str(root)] = cluster
    try:
        cluster.socket_dir.mkdir()
        if os.geteuid() == 0:
            for p in (root, cluster.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        res = _as_user(pw, [str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "-U",
                            pw.pw_name, "--auth=trust", "--no-locale", "-E", "UTF8",
                            "--no-sync"], timeout=timeout, cwd=root)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{res.stdout}\n{res.stderr}")
        opts = {"listen_addresses": "127.0.0.1", "port": str(cluster.port),
                "unix_socket_directories": str(cluster.socket_dir),
                "max_connections": "200", **(settings or {})}
        if launcher == "pg_ctl":
            opt_str = " ".join(f"-c {k}={v}" for k, v in opts.items())
            res = _as_user(pw, [str(bin_dir / "pg_ctl"), "-D", str(cluster.data_dir), "-l",
                                str(cluster.log_path), "-o", opt_str, "-w", "-t",
                                str(int(timeout)), "start"], timeout=timeout + 5, cwd=root)
            cluster.pid = _postmaster_pid(cluster)
            if res.returncode != 0:
                raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n"
                                   f"{_tail(cluster.log_path)}")
        else:
            _start_child(cluster, pw, opts, timeout)
    except BaseException:
        stop_postgres(cluster)
        raise
    return cluster


def _start_child(cluster: PgCluster, pw: pwd.struct_passwd, opts: Mapping[str, str],
                 timeout: float) -> None:
    cmd = [str(cluster.bin_dir / "postgres"), "-D", str(cluster.data_dir)]
    for k, v in opts.items():
        cmd += ["-c", f"{k}={v}"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"}
    with open(cluster.log_path, "ab") as log:
        # SIGQUIT on our death = immediate shutdown, which also ends the backends.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cluster.root, env=env,
                                preexec_fn=_drop_to(pw, signal.SIGQUIT))
    cluster.pid, cluster.proc = proc.pid, proc
    deadline = time.monotonic() + timeout
    while not _pm_ready(cluster):  # the same test `pg_ctl -w` makes
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}:\n"
                               f"{_tail(cluster.log_path)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"postgres not ready after {timeout}s:\n"
                               f"{_tail(cluster.log_path)}")
        time.sleep(0.05)


def _pm_ready(cluster: PgCluster) -> bool:
    try:
        lines = (cluster.data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


def _sweep_stale(tmp: Path, min_age_s: float = 600.0) -> None:
    """Delete clusters left behind by a harness that was killed outright."""
    now = time.time()
    for d in tmp.glob("stampede-pg-*"):
        try:
            if now - d.stat().st_mtime < min_age_s:
                continue
            pid = _postmaster_pid(PgCluster(d, 0, "", Path()))
            if pid is None or not _pid_alive(pid):
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue


def _postmaster_pid(cluster: PgCluster) -> int | None:
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_postgres(cluster: PgCluster, *, keep: bool = False, timeout: float = 30.0) -> None:
    """Fast shutdown by the postmaster's pid (SIGINT), then SIGQUIT (immediate),
    then SIGKILL; then delete the cluster's directory unless `keep`. Idempotent."""
    try:
        pid = cluster.pid or _postmaster_pid(cluster)
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0),
                          (signal.SIGKILL, 5.0)):
            if pid is None or not _alive(cluster, pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(cluster, pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        with _registry_lock:
            _live_clusters.pop(str(cluster.root), None)
        if not keep:
            shutil.rmtree(cluster.root, ignore_errors=True)


def _alive(cluster: PgCluster, pid: int) -> bool:
    if cluster.proc is not None:  # our child: reap it, or it stays a zombie "alive"
        return cluster.proc.poll() is None
    return _pid_alive(pid)


@contextlib.contextmanager
def postgres(**kwargs: object) -> Iterator[PgCluster]:
    """`with postgres() as pg: ... pg.dsn` — stopped and deleted on every way out."""
    cluster = start_postgres(**kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        stop_postgres(cluster)


@atexit.register
def _cleanup_at_exit() -> None:
    # Backstop for callers that did not use the context managers.
    for svc in list(_live_services.values()):
        with contextlib.suppress(Exception):
            stop_service(svc, timeout=3)
    for cluster in list(_live_clusters.values()):
        with contextlib.suppress(Exception):
            stop_postgres(cluster, timeout=10)


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


@contextlib.asynccontextmanager
async def fresh_engine() -> AsyncIterator[Engine]:
    """A started Engine on an embedded Valkey of its own (a temp dir); both gone after."""
    from engine import Engine, Settings  # the harness also serves engine-less baselines
    from engine.valkey import EmbeddedValkey

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
