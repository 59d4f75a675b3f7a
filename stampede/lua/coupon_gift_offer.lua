-- coupon_gift_offer: the owner of a transferable coupon opens a single-use transfer.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     coupon_id      ARGV[2] user (must own it)
-- ARGV[3]     hash of the transfer token (the token itself is never stored)
-- ARGV[4]     how long the offer stays open (ms)
-- Returns     {code, reason, expires_ms}; reason: not_transferable, used, expired, ''
--
-- A new offer replaces an open one (the older token stops working). Only an
-- active coupon within its validity can be offered. Event: gift_offered.
--@include common
--@include coupons

local coupon_id, user, token, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local raw = redis.call('HGET', C.cpn, coupon_id)
if not raw then return {NOT_FOUND, '', 0} end
local c = parse_coupon(raw)
if c.owner ~= user then return {NOT_FOUND, '', 0} end
if redis.call('HGET', K.meta, 'fenced') == '1' then return {FENCED, '', 0} end
c = catch_up(coupon_id, c)
local t = template(c.tpl)
if not t or t.x ~= 1 then return {CONFLICT, 'not_transferable', 0} end
if c.status ~= 'active' then return {CONFLICT, c.status, 0} end
if now >= c.vt then
  expire_coupon(now, coupon_id, c)
  return {CONFLICT, 'expired', 0}
end

-- All checks passed: write.
local expires = math.min(now + ttl, c.vt)
if c.gift ~= '' then redis.call('HDEL', C.gifts, c.gift) end
c.gift = token
redis.call('HSET', C.cpn, coupon_id, format_coupon(c))
redis.call('HSET', C.gifts, token, format_gift({status = 'open', coupon = coupon_id, giver = user,
                                               expires = expires, recipient = '', nonce = ''}))
emit(now, 'gift_offered', {'coupon', coupon_id, 'user', user, 'expires', expires,
                           'token', token})
return {OK, '', expires}
