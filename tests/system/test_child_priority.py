"""The persister and webhook deliverer children yield the CPU to the gateway and Valkey:
a lower share when both want it (nice), and no preemption when they wake (SCHED_BATCH)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stampede.runtime.lifecycle import PERSISTER_NICE, _persister_child


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling")
def test_the_persister_child_runs_at_low_priority_without_wakeup_preemption() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             preexec_fn=_persister_child)
    try:
        assert os.sched_getscheduler(child.pid) == os.SCHED_BATCH
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        nice = int(stat.rsplit(")", 1)[1].split()[16])
        assert nice == os.getpriority(os.PRIO_PROCESS, 0) + PERSISTER_NICE or nice == 19
    finally:
        child.kill()
        child.wait()
