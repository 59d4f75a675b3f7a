-- presale_codes_issue: a new batch of presale codes for a sale.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NKEYS + 3] the presale keys (pbatches, pcodes, segments: P)
-- ARGV[1]     actor (who asked, for the event)
-- ARGV[2]     count: codes in the batch (serials 1..count)
-- ARGV[3]     uses: claims each code may make
-- ARGV[4]     bind: 1 binds a code to the first user who claims with it
-- ARGV[5]     tier: the audience tier a valid code lends its claim
-- Returns     {code, detail, batch number, created_ms}: NOT_FOUND with
--             no_campaign or not_a_sale (a coupon drop), else OK
--
-- Only the batch is stored: a code is its batch, its serial and a signature
-- the engine makes and checks (stampede/domain/presale_codes.py), so the
-- codes are never kept in Redis or the store, and a guessed one fails.
--@include common
--@include args

local P = presale_keys_at(NKEYS + 1)
local m = redis.call('HMGET', K.meta, 'state', 'coupons')
if not m[1] then return {NOT_FOUND, 'no_campaign', 0, 0} end
if m[2] == '1' then return {NOT_FOUND, 'not_a_sale', 0, 0} end
local now = now_ms()
local batch = redis.call('HINCRBY', P.pbatches, 'seq', 1)
local b = {count = tonumber(ARGV[2]), uses = tonumber(ARGV[3]), bind = tonumber(ARGV[4]),
           tier = ARGV[5], created = now}
redis.call('HSET', P.pbatches, batch, format_presale_batch(b))
emit(now, 'presale_codes_issued', {'batch', batch, 'count', b.count, 'uses', b.uses,
                                   'bind', b.bind, 'tier', b.tier, 'actor', ARGV[1]})
return {OK, '', batch, now}
