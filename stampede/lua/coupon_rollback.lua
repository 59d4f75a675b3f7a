-- coupon_rollback: undo a redemption (a refund): the use and every cap it took return, once.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     redemption id
-- ARGV[2]     merchant id of the caller (another merchant's redemption is NOT_FOUND)
-- Returns     {code, status, coupon_id, uses_left, already}: already is 1 when the
--             redemption was rolled back before (nothing changes a second time)
--
-- The coupon gets its use back (a used coupon is active again, or expired at
-- once if its validity has ended meanwhile), and the merchant's daily count
-- of the redemption's day goes down by one. Event: coupon_rolled_back.
--@include common
--@include coupons

local rid, merchant = ARGV[1], ARGV[2]
local now = now_ms()
local raw = redis.call('HGET', C.redeems, rid)
if not raw then return {NOT_FOUND, '', '', 0, 0} end
local r = parse_redemption(raw)
local coupon_id, tpl, day = r.coupon, r.tpl, r.day
if r.merchant ~= merchant then return {NOT_FOUND, '', '', 0, 0} end
local c = parse_coupon(redis.call('HGET', C.cpn, coupon_id))
if r.status == 'rolled_back' then return {OK, r.status, coupon_id, c.uses, 1} end
if redis.call('HGET', K.meta, 'fenced') == '1' then
  return {FENCED, r.status, coupon_id, c.uses, 0}
end
c = catch_up(coupon_id, c)  -- a pending extension judges it as it was (used)

-- All checks passed: write.
c.uses = c.uses + 1
if c.status == 'used' then c.status = 'active' end
redis.call('HSET', C.cpn, coupon_id, format_coupon(c))
redis.call('HINCRBY', C.cday, day .. '|m|' .. merchant, -1)
r.status = 'rolled_back'
redis.call('HSET', C.redeems, rid, format_redemption(r))
stat('rolled_back', 1, tpl, day, merchant)
stat('discount_rolled_back', r.discount, tpl, day, merchant)
emit(now, 'coupon_rolled_back', {'coupon', coupon_id, 'redemption', rid, 'merchant', merchant,
                                 'discount', r.discount, 'uses_left', c.uses, 'template', tpl})
if c.status == 'active' then
  if now >= c.vt then
    expire_coupon(now, coupon_id, c)
  else
    redis.call('ZADD', C.cexp, c.vt, coupon_id)
  end
end
return {OK, c.status, coupon_id, c.uses, 0}
