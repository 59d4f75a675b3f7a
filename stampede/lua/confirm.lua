-- confirm: a paid hold becomes sold, at most once (an accepted waitlist offer too).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     claim_id
-- ARGV[2]     user id of the caller (another user's claim is NOT_FOUND)
-- ARGV[3]     the caller's Idempotency-Key, or '' (kept in the event, for recovery)
-- KEYS[NKEYS + 1] (optional) the buyer's ticket set: a ticketed campaign's claim joins it
-- KEYS[NKEYS + 2] (optional) the sale's outbox: an on_confirm pack to grant joins it
-- Returns     {code, status, deadline_ms, on_confirm}; NOT_FOUND's status is
--             'no_campaign' when the campaign itself is missing (api.healing asks the
--             store); on_confirm is 1 when the campaign grants a pack on confirm (its
--             outbox entry "confirm:<claim_id>" may be pending), else 0
--
-- Confirming a confirmed claim answers OK again (a retried confirm); a hold
-- whose deadline has passed is expired here and now, and answers HOLD_EXPIRED.
--@include common

local now = now_ms()
release_due_waves(now)
-- The campaign first: a claim missing from a campaign that is missing (its keys
-- lost) or fenced (being rebuilt) may yet come back, so it is not NOT_FOUND.
-- Seen here, atomically: a look after the script could see the campaign rebuilt.
local m = redis.call('HMGET', K.meta, 'state', 'fenced')
if not m[1] then return {NOT_FOUND, 'no_campaign', ''} end
if m[2] == '1' then return {FENCED, '', ''} end
local raw = redis.call('HGET', K.claims, ARGV[1])
if not raw then return {NOT_FOUND, '', ''} end
local c = parse_claim(raw)
if c.user ~= ARGV[2] then return {NOT_FOUND, '', ''} end
-- after-sale on_confirm: a retried confirm tells the engine to grant what is pending
local on_confirm = redis.call('HEXISTS', K.meta, 'ocf_drop')
if c.status == 'confirmed' then return {OK, c.status, c.deadline, on_confirm} end
if c.status == 'expired' then return {HOLD_EXPIRED, c.status, c.deadline} end
if c.status ~= 'held' then return {CONFLICT, c.status, c.deadline} end
-- A paid voucher's hold is paid at its own route (coupon_pay.lua issues its coupons).
if redis.call('HEXISTS', K.meta, 'cp_paid:' .. c.sku) == 1 then
  return {CONFLICT, c.status, c.deadline}
end
if now >= c.deadline then
  release_hold(now, ARGV[1], c, 'expired')
  return {HOLD_EXPIRED, c.status, c.deadline}
end
redis.call('HINCRBY', K.stock, c.sku .. '.h', -c.qty)
redis.call('HINCRBY', K.stock, c.sku .. '.s', c.qty)
redis.call('HINCRBY', K.stock, c.sku .. '.rev', c.price * c.qty)  -- at its locked price
redis.call('ZREM', K.deadlines, ARGV[1])
c.status = 'confirmed'
redis.call('HSET', K.claims, ARGV[1], format_claim(c))
count('confirmed')
local fields = {'claim', ARGV[1], 'user', c.user, 'sku', c.sku, 'qty', c.qty, 'price', c.price}
if ARGV[3] and ARGV[3] ~= '' then fields[#fields + 1] = 'idem'; fields[#fields + 1] = ARGV[3] end
emit(now, 'claim_confirmed', fields)
if KEYS[NKEYS + 1] and redis.call('HGET', K.meta, 'tk_on') == '1' then
  redis.call('SADD', KEYS[NKEYS + 1], ARGV[1])  -- its units are tickets (after-sale)
end
-- after-sale on_confirm: the buyer's pack, granted by the engine from the outbox
-- (the drop lives in another slot): written in this run, so a crash cannot lose it
if on_confirm == 1 and KEYS[NKEYS + 2] then
  local oc = redis.call('HMGET', K.meta, 'ocf_drop', 'ocf_sku')
  redis.call('HSET', KEYS[NKEYS + 2], 'confirm:' .. ARGV[1], c.user .. '|' .. oc[1] .. '|' .. oc[2])
end
settle_offer(now, ARGV[1], c, 'offer_accepted')
return {OK, c.status, c.deadline, on_confirm}
