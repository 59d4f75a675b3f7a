-- segment_edit: add user ids to an audience segment, or remove them.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NKEYS + 3] the presale keys (pbatches, pcodes, segments: P)
-- ARGV[1]     actor (who asked, for the event)
-- ARGV[2]     segment name
-- ARGV[3]     'add' or 'remove'
-- ARGV[4..]   user ids (the engine checked them; at most a thousand a call)
-- Returns     {code, detail, changed, size}: NOT_FOUND with no_campaign or
--             not_a_sale (a coupon drop), else OK with how many ids were
--             added (or removed) and the segment's size after
--
-- Members are fields '<segment>|<user>' of P.segments, and P.pbatches' field
-- '#<segment>' is its
-- size; the `segment_changed` event lists the ids that changed, so recovery
-- rebuilds each segment exactly. A phase naming the segment admits its
-- members from the next claim on (include/phases.lua).
--@include common
--@include args

local P = presale_keys_at(NKEYS + 1)
local m = redis.call('HMGET', K.meta, 'state', 'coupons')
if not m[1] then return {NOT_FOUND, 'no_campaign', 0, 0} end
if m[2] == '1' then return {NOT_FOUND, 'not_a_sale', 0, 0} end
local segment, adding = ARGV[2], ARGV[3] == 'add'
local changed = {}
for i = 4, #ARGV do
  local field = segment .. '|' .. ARGV[i]
  local n
  if adding then n = redis.call('HSETNX', P.segments, field, 1)
  else n = redis.call('HDEL', P.segments, field) end
  if n == 1 then changed[#changed + 1] = ARGV[i] end
end
local size = redis.call('HINCRBY', P.pbatches, '#' .. segment,
                        adding and #changed or -#changed)
if #changed > 0 then
  emit(now_ms(), 'segment_changed', {'segment', segment, 'op', ARGV[3],
                                     'users', table.concat(changed, ','), 'n', #changed,
                                     'actor', ARGV[1]})
end
return {OK, '', #changed, size}
