-- allocation_return: ops return an allocation's unused units to the SKU's shared
-- pool now, live (claims running beside it see it before or after, never half).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     sku        ARGV[2] allocation name        ARGV[3] actor
-- Returns     {code, detail, units returned}: NOT_FOUND with no_campaign or
--             no_allocation; CONFLICT allocation_returned when it already was
--@include common
--@include allocations

if redis.call('EXISTS', K.meta) == 0 then return {NOT_FOUND, 'no_campaign', 0} end
local now = now_ms()
local sku, name = ARGV[1], ARGV[2]
local found = nil
for _, a in ipairs(load_allocations(sku, now)) do  -- (due returns happen first)
  if a.name == name then found = a end
end
if not found then return {NOT_FOUND, 'no_allocation', 0} end
if found.r < 0 then return {CONFLICT, 'allocation_returned', 0} end
redis.call('HSET', K.meta, found.field, -1)
emit(now, 'allocation_returned', {'sku', sku, 'allocation', name, 'qty', found.r, 'by', 'ops',
                                  'actor', ARGV[3]})
return {OK, '', found.r}
