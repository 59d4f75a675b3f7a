"""Key sets are named, and the Lua tables K and C are their names in their order."""

import re
from pathlib import Path

from redis.asyncio import Redis

from stampede.state import keys
from tests.state.conftest import run_lua


async def test_every_key_set_has_the_same_names_and_order_in_lua(raw: "Redis[bytes]") -> None:
    ck = keys.coupon_keys("d1")
    guard = keys.guard_keys("d1")
    given = [*ck, *guard]
    reply = await run_lua(raw, """
local out = {}
local g = guard_keys_at(NCKEYS + 1)
for _, set in ipairs({{'K', K}, {'C', C}, {'G', g}}) do
  for name, key in pairs(set[2]) do
    for i = 1, #KEYS do
      if KEYS[i] == key then out[#out + 1] = set[1] .. ':' .. name .. ':' .. i end
    end
  end
end
return {NKEYS, NCKEYS, out}""", keys=given)
    nkeys, nckeys, seen = reply
    where = {}
    for item in seen:
        table, name, slot = item.decode().split(":")
        where[f"{table}.{name}"] = int(slot)
    expected = {f"K.{n}": i + 1 for i, n in enumerate(keys.CampaignKeys._fields)}
    expected |= {f"C.{n}": nkeys + i + 1 for i, n in enumerate(keys.DropKeys._fields)}
    expected |= {f"G.{n}": nckeys + i + 1 for i, n in enumerate(keys.GuardKeys._fields)}
    assert where == expected
    assert (nkeys, nckeys) == (len(ck.campaign), len(ck.campaign) + len(ck.drop))
    # and each Python key set names the key it holds
    assert all(getattr(ck.campaign, n) == f"{{c:d1}}:{n}" for n in keys.CampaignKeys._fields)
    assert all(getattr(ck.drop, n) == f"{{c:d1}}:{n}" for n in keys.DropKeys._fields)


def test_keys_are_never_picked_by_position() -> None:
    root = Path(__file__).parents[2]
    pattern = re.compile(r"(_keys\([^()]*\)|\bks|\bck)\[\d*:?\d*\]")
    found = [f"{p.relative_to(root)}:{n}"
             for folder in ("stampede", "tests", "bench")
             for p in (root / folder).rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
