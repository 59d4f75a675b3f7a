-- coupon_gift_accept: the recipient takes a gifted coupon; ownership moves at once.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- KEYS[NCKEYS + 1] the recipient's wallet
-- ARGV[1]     hash of the transfer token
-- ARGV[2]     recipient user
-- ARGV[3]     random seed for the coupon's new locator (the giver's code dies)
-- ARGV[4]     nonce of this request: a retried call (lost reply) answers OK again
-- Returns     {code, reason, coupon_id}; reason: gift_used, gift_expired, gift_void
--             (the coupon was used, expired or offered anew), own_gift,
--             'per_user:<limit>:<held>', ''
--
-- Single use: an accepted token never works again. The coupon must still be
-- active, owned by the giver and offered under this very token. Where the
-- template says so (gifts_count_to_limit) the gift counts against the
-- recipient's per-user limit. Event: coupon_transferred.
--@include common
--@include coupons

local token, user, seed, nonce = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wallet = KEYS[NCKEYS + 1]
local now = now_ms()
local raw = redis.call('HGET', C.gifts, token)
if not raw then return {NOT_FOUND, '', ''} end
local gift = parse_gift(raw)
local coupon_id, giver = gift.coupon, gift.giver
if gift.status == 'accepted' then
  if gift.recipient == user and gift.nonce == nonce then return {OK, '', coupon_id} end
  return {CONFLICT, 'gift_used', coupon_id}
end
if redis.call('HGET', K.meta, 'fenced') == '1' then return {FENCED, '', coupon_id} end
if now >= gift.expires then return {CONFLICT, 'gift_expired', coupon_id} end
if user == giver then return {CONFLICT, 'own_gift', coupon_id} end
local c = catch_up(coupon_id, parse_coupon(redis.call('HGET', C.cpn, coupon_id)))
if c.status ~= 'active' or c.owner ~= giver or c.gift ~= token or now >= c.vt then
  return {CONFLICT, 'gift_void', coupon_id}
end
local t = template(c.tpl)
local counts = t and t.g == 1
if counts then
  local per_user = meta_limit('per_user')
  local held = units_of(user)
  local gifts = tonumber(redis.call('HGET', C.cusers, 'g|' .. user) or '0')
  if per_user >= 0 and held + gifts + 1 > per_user then
    return {LIMIT_EXCEEDED, 'per_user:' .. per_user .. ':' .. (held + gifts), coupon_id}
  end
end

-- All checks passed: write.
local loc = new_locator(seed, 'gift')
redis.call('HDEL', C.codes, c.loc)
redis.call('HSET', C.codes, loc, coupon_id)
c.owner, c.gift, c.loc = user, '', loc
redis.call('HSET', C.cpn, coupon_id, format_coupon(c))
gift.status, gift.recipient, gift.nonce = 'accepted', user, nonce
redis.call('HSET', C.gifts, token, format_gift(gift))
redis.call('SADD', wallet, coupon_id)
if counts then redis.call('HINCRBY', C.cusers, 'g|' .. user, 1) end
stat('transferred', 1, c.tpl, math.floor(now / DAY_MS))
emit(now, 'coupon_transferred', {'coupon', coupon_id, 'from', giver, 'user', user,
                                 'template', c.tpl, 'locator', loc, 'token', token,
                                 'nonce', nonce, 'counted', counts and 1 or 0})
return {OK, '', coupon_id}
