-- waitlist_leave: a user leaves a SKU's waitlist; leaving with an offer declines it.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     user id            ARGV[2] sku
-- Returns     {code, status, qty, joined_ms, claim_id}: the entry as it was
--             (status waiting, or offered: then its hold is cancelled and
--             the units pass to the next in line)
--
-- Not on the list is NOT_FOUND; a fenced campaign is FENCED, one with no state
-- CAMPAIGN_MISSING (both checked first).
--@include common

local user, sku = ARGV[1], ARGV[2]
local present = campaign_present()
if present ~= OK then return {present} end
local now = now_ms()
release_due_waves(now)
local field = user .. '|' .. sku
local raw = redis.call('HGET', K.wlentries, field)
if not raw then return {NOT_FOUND} end
if redis.call('HGET', K.meta, 'fenced') == '1' then return {FENCED} end
local e = parse_entry(raw)
local c = e.status == 'offered' and parse_claim(redis.call('HGET', K.claims, e.claim))
if c and c.status == 'held' then
  -- A lapsed offer is expired (offer_lapsed), a live one cancelled (offer_declined):
  -- either way the hold's units go on to the next in line.
  release_hold(now, e.claim, c, now >= c.deadline and 'expired' or 'cancelled')
  return {OK, e.status, e.qty, e.joined, e.claim}
end
local member = format_wl_member({sku = sku, seq = e.seq, user = user})
redis.call('ZREM', K.waitlist, member)
redis.call('HDEL', K.wlentries, field)
count('waitlist_left')
emit(now, 'waitlist_left', {'user', user, 'sku', sku, 'qty', e.qty})
offer_waitlist(now, sku)  -- a head that waited for more units may have left
return {OK, e.status, e.qty, e.joined, ''}
