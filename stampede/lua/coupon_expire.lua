-- coupon_expire: coupons whose validity has ended become expired, with events.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     the most coupons to look at in this call (bounds its run time)
-- Returns     {expired, more}: coupons expired now, 1 if more are due
--
-- Run by the service's sweeper; a used coupon only leaves the schedule.
--@include common
--@include coupons

if redis.call('EXISTS', C.cexp) == 0 then return {0, 0} end
local now = now_ms()
local limit = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', C.cexp, '-inf', now, 'LIMIT', 0, limit)
local n = 0
for _, coupon_id in ipairs(due) do
  local raw = redis.call('HGET', C.cpn, coupon_id)
  local c = raw and catch_up(coupon_id, parse_coupon(raw))  -- (a pending extension)
  if c and c.status == 'active' and now >= c.vt then
    expire_coupon(now, coupon_id, c)
    n = n + 1
  elseif not (c and c.status == 'active') then
    redis.call('ZREM', C.cexp, coupon_id)
  end  -- (else catch_up moved it later in the schedule)
end
return {n, #due >= limit and 1 or 0}
