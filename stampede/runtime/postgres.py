"""A throwaway PostgreSQL cluster from the server binaries, for tests, benchmarks and trials.

`with postgres() as pg: ... pg.dsn` runs initdb and the postmaster as a
non-root user (created if missing) in a temp dir, and stops and deletes it on
every way out: the context manager stops it in `finally`, an atexit hook
catches what is still running at interpreter exit, and the postmaster gets a
parent-death signal (SIGQUIT) if this process is killed outright; the temp
dir such a kill leaves behind is swept by a later `start_postgres`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from stampede.runtime.ports import free_port

PG_USER = "stampedepg"


_PR_SET_PDEATHSIG = 1
_live_clusters: dict[str, PgCluster] = {}
_registry_lock = threading.Lock()

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
    opts: dict[str, str] = field(default_factory=dict, repr=False)
    """The server settings it was started with (a restart uses them again)."""

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
        cluster.opts = opts
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


def pause_postgres(cluster: PgCluster, timeout: float = 30.0) -> None:
    """Stop the server (fast shutdown) and keep its data, for `resume_postgres`."""
    stop_postgres(cluster, keep=True, timeout=timeout)
    cluster.pid, cluster.proc = None, None
    with _registry_lock:
        _live_clusters[str(cluster.root)] = cluster  # still ours to clean up


def resume_postgres(cluster: PgCluster, timeout: float = 60.0) -> None:
    """Start a paused cluster again, as our child, on the same port and data."""
    _start_child(cluster, ensure_pg_user(), cluster.opts, timeout)


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
    # Backstop for callers that did not use the context manager.
    for cluster in list(_live_clusters.values()):
        with contextlib.suppress(Exception):
            stop_postgres(cluster, timeout=10)
