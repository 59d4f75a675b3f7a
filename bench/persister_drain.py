"""One persister drains what the streams hold into a store; prints its CPU as JSON.

Run as a script by bench.bench_persister with PYTHONPATH pointing at the code
under test (this checkout, or an older one for the "before" column), so it
imports nothing from `bench` and uses only the persister's long-standing API.

    python bench/persister_drain.py REDIS_URL STORE_URL DATA_DIR
"""

import json
import sys
import time
from pathlib import Path

import uvloop
from redis.asyncio import Redis

import stampede
from stampede import Settings
from stampede.durable.persister import Persister
from stampede.durable.store import open_store
from stampede.runtime import persistence


async def drain(redis_url: str, store_url: str, data_dir: Path) -> dict[str, object]:
    settings = Settings(data_dir=data_dir, store_url=store_url)
    redis: Redis = Redis.from_url(redis_url, decode_responses=True)
    store = await open_store(store_url)  # migrations before the clock starts
    settle = getattr(persistence, "settle_heap", None)  # older code had no such step
    if settle is not None:  # as `stampede persist` starts, in the code under test
        settle()
    try:
        persister = Persister(redis, store, settings, consumer="bench")
        cpu, wall = time.process_time(), time.perf_counter()
        await persister.drain(timeout_s=600)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return {"events": persister.persisted, "cpu_s": cpu, "wall_s": wall,
                "code": str(Path(stampede.__file__).parent.parent)}
    finally:
        await store.close()
        await redis.aclose()


if __name__ == "__main__":
    print(json.dumps(uvloop.run(drain(sys.argv[1], sys.argv[2], Path(sys.argv[3])))))
