-- shard_lend: the donor side of a move of units between two shards of a sharded
-- campaign (stampede/domain/shards.py): take up to n available units of a SKU and
-- record the move in the donor's outbox, in one step.
--
-- KEYS[1..NKEYS] the donor shard's campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the donor's move outbox (keys.moves_key): "out:<move_id>" ->
--             "<to shard>|<sku>|<qty>" until the receiver has the units;
--             "~out:<sku>" units lent over the campaign's life
-- ARGV[1]     move id (unique per move)
-- ARGV[2]     sku
-- ARGV[3]     most units to lend (>= 1)
-- ARGV[4]     the receiving shard's number
-- Returns     {code, lent, available}: OK with the units lent (a retry of the same
--             move answers the first answer while it is pending), SOLD_OUT when
--             nothing is available or the SKU's waitlist has a waiter (the units
--             wait for its head, as in an unsharded campaign), NOT_FOUND without
--             the campaign or SKU
--
-- The units leave `available` and `released` here and reach the receiver by
-- shard_borrow under the same move id; until then the outbox names them, so a
-- crash between the two sides is finished by whoever reads the outbox next. The
-- event names the receiver (`peer`), so recovery rebuilds the outbox from the store.
--@include common

local moves = KEYS[NKEYS + 1]
local move_id, sku = ARGV[1], ARGV[2]
local prior = redis.call('HGET', moves, 'out:' .. move_id)
if prior then
  local qty = tonumber(string.match(prior, '^[^|]*|[^|]*|(%d+)$'))
  return {OK, qty, tonumber(redis.call('HGET', K.stock, sku .. '.a') or '0')}
end
if redis.call('EXISTS', K.meta) == 0 then return {NOT_FOUND, 0, 0} end
local now = now_ms()
release_due_waves(now)
local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.r')
if not s[1] then return {NOT_FOUND, 0, 0} end
local avail, released = tonumber(s[1]), tonumber(s[2])
local take = math.min(tonumber(ARGV[3]), avail)
if take >= 1 and redis.call('EXISTS', K.waitlist) == 1 and wl_head(sku) then take = 0 end
if take < 1 then return {SOLD_OUT, 0, avail} end
redis.call('HINCRBY', K.stock, sku .. '.a', -take)
redis.call('HINCRBY', K.stock, sku .. '.r', -take)
redis.call('HSET', moves, 'out:' .. move_id, ARGV[4] .. '|' .. sku .. '|' .. take)
redis.call('HINCRBY', moves, '~out:' .. sku, take)
emit(now, 'stock_adjusted', {'sku', sku, 'delta', -take, 'actor', 'shard-move:' .. move_id,
                             'before', avail, 'after', avail - take,
                             'released', released - take, 'peer', ARGV[4]})
return {OK, take, avail - take}
