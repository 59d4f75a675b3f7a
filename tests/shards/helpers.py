"""Helpers of the sharded-campaign tests (tests/shards, and tests/store's recovery of
moves)."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

from stampede import Settings

_CHILD = textwrap.dedent("""
    import asyncio, sys
    from stampede import Engine, Settings
    from stampede.domain import shards

    async def main(url, data_dir, stop_at):
        engine = Engine.from_url(url, Settings(data_dir=data_dir))
        await engine.start()
        real_deliver = shards.Shards.deliver

        async def stand_still(what):
            print(what, flush=True)
            await asyncio.sleep(3600)  # killed here

        async def deliver(self, cid, n, m):
            if stop_at == "lent":
                await stand_still("lent")
            real_hdel = self.redis.hdel
            async def hdel(*args):
                await stand_still("borrowed")
            self.redis.hdel = hdel
            await real_deliver(self, cid, n, m)
        shards.Shards.deliver = deliver
        await engine.shards.move("hot", 2, 1, 0, "tee", 5)

    asyncio.run(main(*sys.argv[1:]))
""")


async def kill_mid_move(url: str, settings: Settings, stop_at: str) -> None:
    """A child process moves 5 units of "tee" from shard 1 to shard 0 of the 2-shard
    campaign "hot" on `url`, and is killed (SIGKILL) where `stop_at` says: "lent"
    (between the lend and the borrow) or "borrowed" (before its outbox entry closes)."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, url, str(settings.data_dir),
                              stop_at], stdout=subprocess.PIPE, env={**os.environ})
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.decode().strip() == stop_at
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
