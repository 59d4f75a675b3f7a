"""Durable ack at the edge: a write Valkey did not confirm on disk in time
answers 503 `unavailable` with Retry-After; the retry with the same
Idempotency-Key gets the stored answer, not a second claim."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stampede import Engine, Settings
from stampede.runtime.valkey import EmbeddedValkey
from tests.api.conftest import Api, serve_api
from tests.api.test_api import _create, _user


@pytest.fixture
async def durable_api(tmp_path: Path) -> AsyncIterator[Api]:
    """The apps over their own Valkey (appendfsync everysec) in durable-ack mode."""
    server = EmbeddedValkey(tmp_path / "valkey", appendfsync="everysec")
    engine = Engine.from_url(server.start(), Settings(data_dir=tmp_path, durable_ack=True))
    try:
        await engine.start()
        async with serve_api(engine) as served:
            yield served
    finally:
        await engine.close()
        server.stop()


async def test_unconfirmed_writes_answer_503_and_retries_get_the_first_answer(
        durable_api: Api) -> None:
    api = durable_api
    await _create(api)  # waits for everysec's next fsync: well within 2 s
    api.engine.scripts.durable_ack_ms = 1  # now no fsync can come in time
    headers = {**_user("alice"), "Idempotency-Key": "c-1"}
    resp = await api.public.post("/v1/campaigns/launch/claims", json={"sku": "tee-black-m"},
                                 headers=headers)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"]["code"] == "unavailable"

    api.engine.scripts.durable_ack_ms = 2000
    await asyncio.sleep(1.2)
    again = await api.public.post("/v1/campaigns/launch/claims", json={"sku": "tee-black-m"},
                                  headers=headers)
    assert again.status == 201, await again.text()
    claim = await again.json()
    stats = await api.engine.stats("launch")
    assert stats is not None and stats.claims_by_outcome["held"] == 1  # one claim, not two

    api.engine.scripts.durable_ack_ms = 1
    confirm = await api.public.post(f"/v1/claims/{claim['claim_id']}/confirm",
                                    headers=_user("alice"))
    assert confirm.status == 503
    api.engine.scripts.durable_ack_ms = 2000
    confirm = await api.public.post(f"/v1/claims/{claim['claim_id']}/confirm",
                                    headers=_user("alice"))
    assert confirm.status == 200 and (await confirm.json())["status"] == "confirmed"
