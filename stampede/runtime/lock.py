"""One `serve` per data directory: an exclusive flock on `serve.lock` in it.

The kernel drops the lock when the process dies however it dies (even
SIGKILL), so a stale lock file never blocks a restart. The file holds the
holder's pid, for the message a second `serve` prints before it exits.
"""

import fcntl
import os
from pathlib import Path
from typing import IO

from stampede.errors import ServerError


class AlreadyRunning(ServerError):
    pass


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Take the lock or raise AlreadyRunning; keep the returned file open while serving."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "serve.lock"
    handle = path.open("a+")  # (not truncated: the holder's pid stays readable)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise AlreadyRunning(f"already running (pid {holder}) on {data_dir}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
