"""The cost of replica acknowledgement in cluster mode (STAMPEDE_CLUSTER_WAIT_REPLICAS):
claims/s and latency with and without WAIT, in one run.

One local Valkey Cluster (three primaries, one replica each) and three engines
on it, run round by round, interleaved so that machine drift hits them alike:

    no wait          STAMPEDE_CLUSTER_WAIT_REPLICAS=0: answered once the primary ran
                     the script (the baseline: a failover may lose the last writes)
    wait 1 replica   the default: EVALSHA then WAIT 1 on the script's connection
    wait + durable   WAIT 1 and WAITAOF 1 0 (STAMPEDE_DURABLE_ACK, appendfsync everysec)

Each round is a fresh hot campaign (one slot, one primary) claimed by
`--concurrency` coroutines as fast as answers come (batched claims, no HTTP);
its accounting is checked after the round. The table gives the median
claims/s, its ratio to "no wait", p50/p99 latency over every claim, and the
CPU each claim cost (from /proc, bench/harness.py): the gateway (this
process: engine and load generator) and the six Valkey nodes together
(WAIT makes the primary ask its replica for an acknowledgement, and the
replica answer). CPU per claim moves less than claims/s with whatever else
the machine runs.

    python -m bench.cluster_wait [--seconds 3] [--rounds 2] [--concurrency 256]
"""

import resource
import statistics
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from rich.console import Console

from bench import ack_rounds, harness
from stampede import Engine, Settings
from stampede.runtime.valkey_cluster import LocalValkeyCluster

console = Console()
MODES = {"no wait": (0, False), "wait 1 replica": (1, False), "wait + durable": (1, True)}
BASELINE = "no wait"


@asynccontextmanager
async def _engine(url: str, data: Path, replicas: int, durable: bool) -> AsyncIterator[Engine]:
    engine = Engine.from_url(url, Settings(data_dir=data, redis_cluster=True,
                                           cluster_wait_replicas=replicas,
                                           durable_ack=durable))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _round(engine: Engine, cid: str, seconds: float, concurrency: int,
                 latencies: list[float], nodes: list[int],
                 cpu: dict[str, list[float]]) -> float:
    await ack_rounds.hot_campaign(engine, cid)
    before = (_own_cpu(), harness.tree_cpu_seconds(nodes))
    done, rate = await ack_rounds.claim_round(engine, cid, seconds, concurrency, latencies)
    cpu["gateway"].append((_own_cpu() - before[0]) / done * 1e6)
    cpu["valkey"].append((harness.tree_cpu_seconds(nodes) - before[1]) / done * 1e6)
    return rate


async def run(seconds: float, rounds: int, concurrency: int) -> ack_rounds.Figures:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-wait-") as tmp:
        cluster = LocalValkeyCluster(Path(tmp), primaries=3, replicas=1)
        try:
            url = cluster.start()
            nodes = [n.process.pid for n in cluster.nodes if n.process is not None]
            async with AsyncExitStack() as stack:
                engines = {name: await stack.enter_async_context(
                    _engine(url, Path(tmp), *how)) for name, how in MODES.items()}
                rates: dict[str, list[float]] = {m: [] for m in MODES}
                latencies: dict[str, list[float]] = {m: [] for m in MODES}
                cpu: dict[str, dict[str, list[float]]] = {
                    m: {"gateway": [], "valkey": []} for m in MODES}
                for r in range(rounds):
                    for n, (name, engine) in enumerate(engines.items()):
                        console.log(f"round {r + 1}/{rounds}: {name}")
                        rates[name].append(await _round(engine, f"w{r}-{n}", seconds,
                                                        concurrency, latencies[name], nodes,
                                                        cpu[name]))
        finally:
            cluster.stop()
    found = ack_rounds.figures(rates, latencies, BASELINE)
    for m in MODES:
        found[m] |= {"gateway_us": statistics.median(cpu[m]["gateway"]),
                     "valkey_us": statistics.median(cpu[m]["valkey"])}
    return found


def main() -> None:
    ack_rounds.main(__doc__ or "", run, "cluster engine claims (no HTTP)",
                    {"gateway µs/claim": "gateway_us", "valkey µs/claim": "valkey_us"})


if __name__ == "__main__":
    main()
