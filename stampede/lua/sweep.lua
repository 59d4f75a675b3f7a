-- sweep: release due waves, return due presale allocations (include/allocations.lua)
-- and expire lapsed holds, on the service's timer.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     the most holds to expire in this call (bounds its run time)
-- Returns     {expired, more}: holds expired now, 1 if more are due
--@include common
--@include allocations

if redis.call('EXISTS', K.meta) == 0 then return {0, 0} end
local now = now_ms()
release_due_waves(now)
return_due_allocations(now)
local limit = tonumber(ARGV[1])
local n, visited = expire_due_holds(now, limit)
return {n, visited >= limit and 1 or 0}
