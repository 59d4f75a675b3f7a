"""A bytes client (script replies here are msgpack) and a way to run generated Lua."""

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from stampede.state.luagen import TEST_FRAGMENTS
from stampede.state.scripts import render_text


@pytest.fixture
async def raw(clean_redis: str) -> AsyncIterator["Redis[bytes]"]:
    client: Redis[bytes] = Redis.from_url(clean_redis)
    yield client
    await client.aclose()


async def run_lua(redis: "Redis[bytes]", body: str, keys: Sequence[str] = (),
                  args: Sequence[Any] = ()) -> Any:
    """EVAL `body` after the generated fragments (keys, records, args and the test-only
    way back, args_to)."""
    head = "".join(f"--@include {name}\n" for name in
                   ("keys", "coupon_keys", "records", "coupon_records", "refund_records",
                    "bundle_records", "args", "args_to"))
    return await redis.eval(render_text(head + body, TEST_FRAGMENTS),  # type: ignore[misc]
                            len(keys), *keys, *args)
