-- shard_borrow: the receiving side of a move of units between two shards of a
-- sharded campaign: add the units shard_lend took from the donor, once per move.
--
-- KEYS[1..NKEYS] the receiving shard's campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the receiver's move log (keys.moves_key): "in:<move_id>" -> units,
--             kept for good so a move is never borrowed twice; "~in:<sku>" units
--             borrowed over the campaign's life
-- ARGV[1]     move id
-- ARGV[2]     sku
-- ARGV[3]     units (what shard_lend lent)
-- ARGV[4]     the donor shard's number (the event's `peer`: recovery rebuilds the log)
-- Returns     {code, added, available}: added is 0 when this move was borrowed
--             before (a redelivery), NOT_FOUND without the campaign or SKU
--
-- Units that arrive are offered to the SKU's waitlist on this shard first, head
-- first, as returned units are (include/common.lua offer_waitlist).
--@include common

local moves = KEYS[NKEYS + 1]
local move_id, sku, qty = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HEXISTS', moves, 'in:' .. move_id) == 1 then
  return {OK, 0, tonumber(redis.call('HGET', K.stock, sku .. '.a') or '0')}
end
if redis.call('EXISTS', K.meta) == 0 then return {NOT_FOUND, 0, 0} end
local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.r')
if not s[1] then return {NOT_FOUND, 0, 0} end
local now = now_ms()
local avail, released = tonumber(s[1]), tonumber(s[2])
redis.call('HINCRBY', K.stock, sku .. '.a', qty)
redis.call('HINCRBY', K.stock, sku .. '.r', qty)
redis.call('HSET', moves, 'in:' .. move_id, qty)
redis.call('HINCRBY', moves, '~in:' .. sku, qty)
emit(now, 'stock_adjusted', {'sku', sku, 'delta', qty, 'actor', 'shard-move:' .. move_id,
                             'before', avail, 'after', avail + qty,
                             'released', released + qty, 'peer', ARGV[4]})
offer_waitlist(now, sku)
return {OK, qty, tonumber(redis.call('HGET', K.stock, sku .. '.a'))}
