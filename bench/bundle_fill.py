"""Fill a campaign's stream with bundle claims; prints the events made as JSON.

Run as a script by bench.persister_bundles with PYTHONPATH pointing at the code
under test (this checkout, or another worktree), so that the events are the
shape that code's scripts write; it imports nothing from `bench`.

    python bench/bundle_fill.py REDIS_URL DATA_DIR CAMPAIGN BUNDLES
"""

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import uvloop

import stampede
from stampede import Engine, Outcome, Settings
from stampede.domain.models import CampaignSpec


def spec(stock: int) -> CampaignSpec:
    """A ticket + merch bundle, each line's SKU with an allocation and a price step (as
    bench.engine_claims's presale campaign), every claimant with a person."""
    now = datetime.now(UTC)
    wave = [{"at": (now - timedelta(seconds=1)).isoformat(), "qty": stock}]
    return msgspec.convert({
        "name": "bundles", "opens_at": (now - timedelta(minutes=1)).isoformat(),
        "closes_at": (now + timedelta(hours=1)).isoformat(),
        "limits": {"per_user": 2, "per_person": 2},
        "bundles": {"fan": {"lines": [{"sku": "hot"}, {"sku": "tee"}]}},
        "skus": [{"sku": "hot", "price": 100, "waves": wave,
                  "price_steps": [{"price": 85, "first_units": 10}],
                  "allocations": [{"name": "app", "qty": stock // 2, "channels": ["app"]}]},
                 {"sku": "tee", "price": 30, "waves": wave,
                  "price_steps": [{"price": 25, "first_units": 10}]}]}, CampaignSpec)


async def fill(redis_url: str, data_dir: Path, cid: str, bundles: int) -> dict[str, object]:
    engine = Engine.from_url(redis_url, Settings(data_dir=data_dir))
    await engine.start()
    try:
        await engine.define_campaign(cid, spec(10 * bundles))
        for first in range(0, bundles, 256):  # 256 at once, as the engine benches claim
            got = await asyncio.gather(*(
                engine.claim_bundle(cid, f"u{i}", bundle="fan", identity=f"h-{i}",
                                    channel="app")
                for i in range(first, min(first + 256, bundles))))
            assert all(r.outcome is Outcome.OK for r in got), got[0]
        stats = await engine.stats(cid)
        assert stats is not None
        return {"events": int(stats.events), "bundles": bundles,
                "code": str(Path(stampede.__file__).parent.parent)}
    finally:
        await engine.close()


if __name__ == "__main__":
    print(json.dumps(uvloop.run(fill(sys.argv[1], Path(sys.argv[2]), sys.argv[3],
                                     int(sys.argv[4])))))
