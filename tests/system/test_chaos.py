"""The chaos drill, short: each fault once under load, then nothing lost (runtime/chaos.py).

Valkey, the persister and the whole service are killed with SIGKILL, the
store (PostgreSQL) is stopped and started, and the campaign's keys are
flushed; after each the buyers' confirmed claims are all in the store, the
audit is clean, there is no dead letter and no answer but 503 went wrong.
`python -m bench.chaos --minutes N` runs the same faults for longer.

Valkey runs with `appendfsync always` here: every answered write is in its AOF
before the answer, so a kill of Valkey may lose nothing at all and the drill
tolerates no loss. (Under the default `everysec`, Valkey can answer writes it
has not yet written while a slow fsync runs; the bench drill reports those as
`lost_to_aof`, and README's "Loss windows" documents them.)
"""

from pathlib import Path

import pytest

from stampede.runtime.chaos import Drill
from tests.pg import NO_PG, pg_available

CATCH_UP_BOUND_S = 30.0


@pytest.mark.parametrize("store", ["postgresql"])
async def test_every_fault_heals_and_loses_nothing(tmp_path: Path, store: str) -> None:
    if not pg_available():
        pytest.skip(NO_PG)
    reports = []
    async with Drill(tmp_path, postgresql=True, buyers=12, appendfsync="always",
                     catch_up_bound_s=CATCH_UP_BOUND_S) as drill:
        for fault in drill.faults():
            reports.append(await drill.run_fault(fault, load_s=1.0))
            print(reports[-1])
    assert [r.fault for r in reports] == ["valkey_kill", "persister_kill", "service_kill",
                                          "store_stop", "campaign_flush"]
    for r in reports:
        assert r.ok, (r.fault, r.problems)
        assert r.lost_to_aof == 0, r
        assert r.catch_up_s < CATCH_UP_BOUND_S
        assert r.answers > 0
    assert reports[-1].confirmed_total > 50
    kinds = {r.fault: r for r in reports}
    assert kinds["valkey_kill"].heal_s < 20 and kinds["campaign_flush"].heal_s < 10
