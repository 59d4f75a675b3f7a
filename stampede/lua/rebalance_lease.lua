-- rebalance_lease: take, keep or give up the lease that lets one gateway's
-- rebalancer act for a sharded campaign at a time (stampede/domain/rebalance.py).
--
-- KEYS[1]  the lease (keys.rebalance_lease_key, in shard 0's slot): the holder's
--          token, expiring after the lease time unless kept
-- ARGV[1]  the caller's token (one per process)
-- ARGV[2]  lease time in ms; 0 gives the lease up, if the caller holds it
-- Returns  2 taken (it was free, or its holder stopped keeping it), 1 kept (the
--          caller held it: extended), 0 another token holds it (or given up)
--
-- Fenced by the token: only the holder extends or gives up its lease, so a
-- holder that stalled past its lease time finds it taken and stops acting.

local lease, token, ms = KEYS[1], ARGV[1], tonumber(ARGV[2])
local holder = redis.call('GET', lease)
if ms == 0 then
  if holder == token then redis.call('DEL', lease) end
  return 0
end
if holder == token then
  redis.call('PEXPIRE', lease, ms)
  return 1
end
if redis.call('SET', lease, token, 'NX', 'PX', ms) then return 2 end
return 0
