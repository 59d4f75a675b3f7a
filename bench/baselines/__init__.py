"""Baselines for the end-to-end benchmark, and the little server runner they share.

Each baseline is an aiohttp + uvloop app answering the same claim endpoint as
the gateway, so that the benchmark compares like with like:

- `bare_http`  — parse the body, answer 201; the HTTP ceiling of this stack.
- `pg_rowlock` — the "typical web shop": one PostgreSQL transaction per claim
  with a conditional UPDATE on the stock row.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing as mp
import signal
import sys
from collections.abc import Callable

from aiohttp import web

AppFactory = Callable[[argparse.Namespace], web.Application]
_PR_SET_PDEATHSIG = 1


def add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the port (SO_REUSEPORT)")


def _die_with_parent() -> None:
    # A worker must not outlive its master if the master is SIGKILLed.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _run_one(factory: AppFactory, args: argparse.Namespace, reuse_port: bool) -> None:
    import uvloop

    if reuse_port:
        _die_with_parent()
    web.run_app(factory(args), host=args.host, port=args.port, reuse_port=reuse_port,
                print=None, access_log=None, handle_signals=True, backlog=4096,
                shutdown_timeout=2.0, loop=uvloop.new_event_loop())


def serve(factory: AppFactory, args: argparse.Namespace) -> None:
    """Run the app in one process, or in `--workers` processes on one port.

    The master only supervises: SIGTERM/SIGINT to it stops every worker, so a
    harness can stop the whole service by the one pid it started.
    """
    if args.workers <= 1:
        _run_one(factory, args, reuse_port=False)
        return
    ctx = mp.get_context("fork")  # nothing async has started yet in this process
    procs = [ctx.Process(target=_run_one, args=(factory, args, True), daemon=True)
             for _ in range(args.workers)]
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for p in procs:
        p.start()
    try:
        while not stopping and all(p.is_alive() for p in procs):
            procs[0].join(0.2)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(1)
    sys.exit(0 if stopping else 1)
