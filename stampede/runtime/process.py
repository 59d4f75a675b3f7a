"""Child processes that never outlive their parent."""

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For Popen's preexec_fn: the kernel sends SIGTERM when the parent dies.

    Runs in the child between fork and exec, so it holds even if the parent
    is killed by SIGKILL. Linux only; elsewhere pid files cover the gap.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
