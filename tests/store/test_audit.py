"""The audit finds what the scripts forbid, from the stored events alone."""

from typing import Any

import msgspec
import pytest

from stampede.durable.audit import audit
from stampede.durable.events import Event, from_entry
from stampede.durable.projection import store_events
from stampede.durable.store import Store
from tests.conftest import campaign_spec

_SPEC = msgspec.json.encode(campaign_spec(stock=0, per_user=1, waves=[])).decode()


def _events(*steps: tuple[str, dict[str, Any]], skip: int = 0) -> list[Event]:
    out = []
    seq = 0
    for etype, data in steps:
        seq += 1
        if seq == skip:
            seq += 1
        out.append(from_entry("c1", f"{seq}-0", {"seq": str(seq), "type": etype,
                                                 "ts": str(1000 + seq), "epoch": "1",
                                                 **{k: str(v) for k, v in data.items()}}))
    return out


DEFINE = ("campaign_defined", {"spec": _SPEC})
WAVE = ("wave_released", {"sku": "tee", "qty": 1, "wave": 0})


def held(claim: str, user: str) -> tuple[str, dict[str, Any]]:
    return ("claim_held", {"claim": claim, "user": user, "sku": "tee", "qty": 1, "price": 1,
                           "deadline": 10**13})


def settled(kind: str, claim: str, user: str) -> tuple[str, dict[str, Any]]:
    price = {"price": 1} if kind == "confirmed" else {}  # as confirm.lua writes it
    return (f"claim_{kind}", {"claim": claim, "user": user, "sku": "tee", "qty": 1, **price})


CASES = {
    "clean": ([DEFINE, WAVE, held("a", "u1"), settled("confirmed", "a", "u1")], 0, None),
    "oversold": ([DEFINE, WAVE, held("a", "u1"), held("b", "u2")], 0, "oversold"),
    "over_user_limit": ([DEFINE, WAVE, WAVE, held("a", "u1"), held("b", "u1")], 0,
                        "over_user_limit"),
    "confirmed_twice": ([DEFINE, WAVE, held("a", "u1"), settled("confirmed", "a", "u1"),
                         settled("confirmed", "a", "u1")], 0, "confirmed_twice"),
    "event_gap": ([DEFINE, WAVE, held("a", "u1")], 2, "event_gap"),
}


@pytest.mark.parametrize("case", CASES)
async def test_audit_finds_each_violation(store: Store, case: str) -> None:
    steps, skip, kind = CASES[case]
    async with store.begin() as conn:
        await store_events(conn, store, _events(*steps, skip=skip))
    summary = await audit(store)
    kinds = {v["kind"] for v in summary["campaigns"]["c1"]["violation_samples"]}
    if kind is None:
        assert summary["ok"] and not kinds, summary
    else:
        assert not summary["ok"] and kind in kinds, summary
