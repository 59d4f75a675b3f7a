"""A coupon drop under a persister killed with SIGKILL, again and again: nothing lost.

Claims, redemptions, rollbacks and gifts run through the engine in this
process while a real `stampede persist` is killed mid-load and restarted;
then the store must hold every acknowledged coupon and redemption with the
same state as Redis, and `stampede audit` (coupon invariants included) pass.
"""

import asyncio
import random
import signal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from stampede import Engine, Outcome
from stampede.domain.coupons.spec import MerchantSpec, RedemptionRequest
from stampede.durable.store import open_store
from stampede.durable.store import schema as t
from stampede.state import records
from tests.coupons.helpers import FIVE_OFF, drop_spec
from tests.store.conftest import pg_server_url, store_url  # noqa: F401 (fixtures)
from tests.system.test_durability import _env, _persister, _run, engine_for  # noqa: F401

KILLS = 4


class Rush:
    def __init__(self, engine: Engine, token: str) -> None:
        self.engine, self.token = engine, token
        self.coupons: set[str] = set()
        self.redemptions: set[str] = set()
        self.stop = asyncio.Event()
        self.rng = random.Random(5)

    async def person(self, n: int) -> None:
        merchant = await self.engine.coupons.merchant(self.token)
        assert merchant is not None
        i = 0
        while not self.stop.is_set():
            user = f"p{n}-{i % 25}"
            i += 1
            r = await self.engine.coupons.claim("rush", user, "five")
            if r.outcome is not Outcome.OK:
                await asyncio.sleep(0.005)
                continue
            (c,) = r.view.coupons
            self.coupons.add(c.coupon_id)
            roll = self.rng.random()
            if roll < 0.5:
                red = await self.engine.coupons.redeem(merchant, RedemptionRequest(
                    code=c.code or "", order_id=f"o{n}-{i}", order_amount=1000))
                assert red.outcome is Outcome.OK, red
                self.redemptions.add(red.view.redemption_id)
                if roll < 0.15:
                    await self.engine.coupons.rollback(red.view.redemption_id, "till")
            elif roll < 0.7:
                offer = await self.engine.coupons.offer_gift(c.coupon_id, user)
                await self.engine.coupons.accept_gift(offer.view.transfer_token, f"f{n}")


async def test_persister_killed_mid_drop_loses_nothing(
        tmp_path: Path, clean_redis: str, store_url: str,  # noqa: F811
        engine_for: Engine) -> None:  # noqa: F811
    env = _env(tmp_path, clean_redis, store_url)
    spec = drop_spec(stock=100_000, per_user=1000,
                     templates={"five": {**FIVE_OFF, "transferable": True}})
    await engine_for.define_campaign("rush", spec)
    creds = await engine_for.coupons.put_merchant("till", MerchantSpec(name="till"))
    rush = Rush(engine_for, creds.token)
    load = asyncio.gather(*(rush.person(n) for n in range(24)))
    proc = _persister(env, tmp_path)
    try:
        for _ in range(KILLS):
            await asyncio.sleep(random.uniform(0.3, 0.7))
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
            proc = _persister(env, tmp_path)
        # A loaded machine claims slowly: let the rush reach its size before it stops.
        for _ in range(600):
            if len(rush.coupons) > 200:
                break
            await asyncio.sleep(0.1)
    finally:
        rush.stop.set()
        await load
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert len(rush.coupons) > 200 and rush.redemptions
    drained = _run(env, "persist", "--drain")
    assert drained.returncode == 0, drained.stderr[-2000:]
    audit = _run(env, "audit")
    assert audit.returncode == 0, audit.stdout[-3000:]
    assert '"coupons"' in audit.stdout
    store = await open_store(store_url)
    try:
        async with store.engine.connect() as conn:
            coupons = {r.coupon_id: (r.status, r.uses_left, r.user_id)
                       for r in await conn.execute(select(t.coupons))}
            redemptions = {r.redemption_id: r.status
                           for r in await conn.execute(select(t.redemptions))}
    finally:
        await store.close()
    assert rush.coupons <= set(coupons) and rush.redemptions <= set(redemptions)
    raw: Any = await engine_for.redis.hgetall("{c:rush}:cpn")
    cpns = {k: records.COUPON.decode(v) for k, v in raw.items()}
    assert coupons == {k: (c.status, c.uses, c.owner) for k, c in cpns.items()}
    reds: Any = await engine_for.redis.hgetall("{c:rush}:redeems")
    assert redemptions == {k: records.REDEMPTION.decode(v).status for k, v in reds.items()
                           if not k.startswith("o|")}
