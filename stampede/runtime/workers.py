"""`serve --workers N`: N gateway processes sharing the ports, kept alive.

The master starts nothing but processes: each worker is `stampede worker`,
binding the same ports with SO_REUSEPORT. A worker that dies is restarted;
SIGTERM or SIGINT is passed on to all of them and the master waits for their
drain. Workers die with the master (parent-death signal), so a killed master
leaves none behind.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import multiprocess

from stampede.errors import ServerError
from stampede.logs import log
from stampede.metrics import RESTARTS
from stampede.runtime.process import die_with_parent
from stampede.runtime.valkey import EmbeddedValkey

RESTART_BACKOFF_S = 1.0


@dataclass
class WorkerPool:
    count: int
    host: str
    port: int
    admin_port: int
    redis_url: str
    metrics_dir: Path
    grace_s: float
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopping: bool = False
    valkey: EmbeddedValkey | None = None
    """The embedded Valkey, restarted here if it dies (worker 0's heal job then
    rebuilds whatever its AOF lost)."""

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["STAMPEDE_REDIS_URL"] = self.redis_url
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        return env

    def _spawn(self, index: int, restarted: bool = False) -> None:
        cmd = [sys.executable, "-m", "stampede.runtime.cli", "worker", "--index", str(index),
               "--host", self.host, "--port", str(self.port),
               "--admin-port", str(self.admin_port)]
        if restarted:  # the replacement counts the restart: the master exposes no metrics
            cmd.append("--restarted")
        self.procs[index] = subprocess.Popen(cmd, env=self._env(), preexec_fn=die_with_parent)

    def run(self) -> int:
        """Start the workers and supervise them until a stop signal; returns an exit code."""
        shutil.rmtree(self.metrics_dir, ignore_errors=True)  # stale samples of dead pids
        self.metrics_dir.mkdir(parents=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for i in range(self.count):
            self._spawn(i)
        while not self.stopping:
            time.sleep(0.2)
            if self.valkey is not None and self.valkey.exited() is not None:
                self._restart_valkey(self.valkey)
            for index, proc in list(self.procs.items()):
                if proc.poll() is not None and not self.stopping:
                    log.warning("worker died; restarting", index=index, code=proc.returncode)
                    # Its per-worker gauges (the console's worker list) go with it.
                    multiprocess.mark_process_dead(proc.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
                    time.sleep(RESTART_BACKOFF_S)
                    self._spawn(index, restarted=True)
        return self._stop_all()

    def _restart_valkey(self, valkey: EmbeddedValkey) -> None:
        log.warning("embedded Valkey died; restarting it from its AOF", code=valkey.exited())
        time.sleep(RESTART_BACKOFF_S)
        try:
            valkey.restart()
            RESTARTS.labels("valkey").inc()
        except ServerError as exc:  # next round tries again
            log.error("embedded Valkey did not start", error=str(exc))

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _stop_all(self) -> int:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + 5
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return 0
