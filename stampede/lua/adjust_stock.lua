-- adjust_stock: ops add or remove available units of one SKU, live.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the operation's idempotency key: a retry answers the first
--             answer (a stock_answer record)
-- ARGV[1]     sku
-- ARGV[2]     delta (non-zero integer; negative takes from available only)
-- ARGV[3]     actor (who asked, for the event)
-- ARGV[4]     how long to remember the answer, in ms
-- Returns     {code, available, released}: available after any waitlist offers
--
-- Held and sold units are never taken back: a removal larger than what is
-- available is a CONFLICT and changes nothing. Added units go to the SKU's
-- waitlist first (offers), and only the rest to available stock.
--@include common

local prior = redis.call('GET', KEYS[NKEYS + 1])
if prior then
  local p = parse_stock_answer(prior)
  return {p.code, p.available, p.released}
end
if redis.call('EXISTS', K.meta) == 0 then return {NOT_FOUND, 0, 0} end
local now = now_ms()
release_due_waves(now)
local sku = ARGV[1]
local delta = tonumber(ARGV[2])
local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.r')
if not s[1] then return {NOT_FOUND, 0, 0} end
local avail, released = tonumber(s[1]), tonumber(s[2])
if delta == 0 or avail + delta < 0 then return {CONFLICT, avail, released} end
redis.call('HINCRBY', K.stock, sku .. '.a', delta)
redis.call('HINCRBY', K.stock, sku .. '.r', delta)
-- The idempotency key and the released total let recovery rebuild the answer.
emit(now, 'stock_adjusted', {'sku', sku, 'delta', delta, 'actor', ARGV[3],
                             'before', avail, 'after', avail + delta,
                             'idem', KEYS[NKEYS + 1], 'released', released + delta})
if delta > 0 then offer_waitlist(now, sku) end
local after = tonumber(redis.call('HGET', K.stock, sku .. '.a'))
redis.call('SET', KEYS[NKEYS + 1], format_stock_answer({code = OK, available = after,
           released = released + delta}), 'PX', tonumber(ARGV[4]))
return {OK, after, released + delta}
