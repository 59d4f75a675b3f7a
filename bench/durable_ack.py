"""The cost of durable acknowledgement (STAMPEDE_DURABLE_ACK): claims/s and latency
beside the default, in one run.

Four engines, each on an embedded Valkey of its own, run batched claims (no
HTTP) round by round, interleaved so that machine drift hits them alike:

    default            appendfsync everysec, answered before any fsync (the baseline)
    always             appendfsync always: each event-loop turn's writes fsynced
                       before Valkey replies, no WAITAOF
    durable, everysec  WAITAOF after each batch: answered after the next
                       once-a-second fsync
    durable, always    WAITAOF after each batch, which finds it already synced

Each claim's latency is taken from its submission to its answer; the table
gives the median claims/s over the rounds, its ratio to the default and the
p50/p99 latency over every claim of every round. After each round the
campaign's accounting is checked (nothing oversold, every answered hold there).

    python -m bench.durable_ack [--seconds 3] [--rounds 2] [--concurrency 256]
"""

import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from rich.console import Console

from bench import ack_rounds
from stampede import Engine, Settings
from stampede.runtime.valkey import EmbeddedValkey

console = Console()
MODES = {"default": ("everysec", False), "always": ("always", False),
         "durable, everysec": ("everysec", True), "durable, always": ("always", True)}


@asynccontextmanager
async def _engine(appendfsync: str, durable: bool) -> AsyncIterator[Engine]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp), appendfsync=appendfsync)
        try:
            engine = Engine.from_url(server.start(),
                                     Settings(data_dir=Path(tmp), durable_ack=durable))
            await engine.start()
            try:
                yield engine
            finally:
                await engine.close()
        finally:
            server.stop()


async def run(seconds: float, rounds: int, concurrency: int) -> ack_rounds.Figures:
    async with AsyncExitStack() as stack:
        engines = {name: await stack.enter_async_context(_engine(*how))
                   for name, how in MODES.items()}
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        latencies: dict[str, list[float]] = {m: [] for m in MODES}
        for r in range(rounds):
            for name, engine in engines.items():
                console.log(f"round {r + 1}/{rounds}: {name}")
                await ack_rounds.hot_campaign(engine, f"bench{r}")
                _, rate = await ack_rounds.claim_round(engine, f"bench{r}", seconds,
                                                       concurrency, latencies[name])
                rates[name].append(rate)
    return ack_rounds.figures(rates, latencies, "default")


def main() -> None:
    ack_rounds.main(__doc__ or "", run, "engine claims (no HTTP)")


if __name__ == "__main__":
    main()
