"""Stage timings inside a Stampede gateway, for `bench.e2e --stages` (never shipped).

`bench.e2e --stages` puts this directory on the service's PYTHONPATH and sets
BENCH_PROBE_DIR to a directory: Python imports this module at start-up in
every process of the service. In the process that runs a claim batcher (the
gateway) it records, until SIGUSR2 asks for them in PROBE_DIR/probe-PID.json
(SIGUSR1 starts afresh):

- `wait_ms`: each claim, from its submission to its batch leaving (the flush
  policy: the tick, and the slot its campaign's batch in flight holds);
- `trip_ms`: each batch, from leaving to its answers (EVALSHA through Valkey and
  back, the reply decoded; includes the event loop's turns meanwhile); `size`;
- `lag_ms`: the event loop's lateness, sampled every LAG_EVERY_S (a handler,
  a decode or a collection that holds the loop shows up here);
- `gc_ms`: every collection's pause, with its generation.

What the client measures beyond wait + trip is the HTTP side (parse, auth,
answer) and the loop's queue. The probe costs a little CPU (the lag sampler):
compare probed runs with probed runs.
"""

import gc
import json
import os
import signal
import time
from typing import Any

PROBE_DIR = os.environ.get("BENCH_PROBE_DIR")
LAG_EVERY_S = 0.002

_samples: dict[str, list[float]] = {}
_gc_start = [0.0]


def _reset(*_: Any) -> None:
    _samples.clear()
    for name in ("wait_ms", "trip_ms", "size", "lag_ms", "gc0_ms", "gc1_ms", "gc2_ms"):
        _samples[name] = []


def _dump(*_: Any) -> None:
    assert PROBE_DIR is not None
    path = os.path.join(PROBE_DIR, f"probe-{os.getpid()}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(_samples, f)
    os.replace(path + ".tmp", path)


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    else:
        _samples[f"gc{info['generation']}_ms"].append(
            (time.perf_counter() - _gc_start[0]) * 1e3)


def _patch_batcher() -> None:
    import asyncio

    from stampede.domain import batcher

    stamps: dict[int, float] = {}
    started: list[asyncio.Task[None]] = []

    async def lag_sampler() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(LAG_EVERY_S)
            _samples["lag_ms"].append((time.perf_counter() - t - LAG_EVERY_S) * 1e3)

    init, submit = batcher.ClaimBatcher.__init__, batcher.ClaimBatcher.submit

    def patched_init(self: Any, run_batch: Any, *args: Any, **kwargs: Any) -> None:
        async def timed(campaign_id: str, claims: Any) -> Any:
            t0 = time.perf_counter()
            _samples["size"].append(len(claims))
            for c in claims:
                _samples["wait_ms"].append((t0 - stamps.pop(id(c), t0)) * 1e3)
            try:
                return await run_batch(campaign_id, claims)
            finally:
                _samples["trip_ms"].append((time.perf_counter() - t0) * 1e3)
        init(self, timed, *args, **kwargs)

    def patched_submit(self: Any, campaign_id: str, claim: Any) -> Any:
        if not started:
            started.append(asyncio.get_running_loop().create_task(lag_sampler()))
        stamps[id(claim)] = time.perf_counter()
        return submit(self, campaign_id, claim)

    batcher.ClaimBatcher.__init__ = patched_init  # type: ignore[method-assign]
    batcher.ClaimBatcher.submit = patched_submit  # type: ignore[method-assign]


if PROBE_DIR:
    _reset()
    gc.callbacks.append(_on_gc)
    signal.signal(signal.SIGUSR1, _reset)
    signal.signal(signal.SIGUSR2, _dump)
    try:
        _patch_batcher()
    except ImportError:  # not a Stampede process
        pass
