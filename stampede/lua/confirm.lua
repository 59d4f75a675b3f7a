-- confirm: a paid hold becomes sold, at most once (an accepted waitlist offer too).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     claim_id (a bundle's, or one of its lines': every line is confirmed)
-- ARGV[2]     user id of the caller (another user's claim is NOT_FOUND)
-- ARGV[3]     the caller's Idempotency-Key, or '' (kept in the event, for recovery)
-- KEYS[NKEYS + 1] (optional) the buyer's ticket set: a ticketed campaign's claim joins it
-- KEYS[NKEYS + 2] (optional) the sale's outbox: an on_confirm pack to grant joins it
-- Returns     {code, status, deadline_ms, on_confirm, claim_ids}; NOT_FOUND's status is
--             'no_campaign' when the campaign itself is missing (api.healing asks the
--             store); on_confirm is 1 when the campaign grants a pack on confirm (an
--             outbox entry "confirm:<claim_id>" per confirmed claim, a bundle's lines
--             each, may be pending), else 0; claim_ids the claims confirmed (a bundle's
--             lines, else the claim)
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
-- A bundle is confirmed by its id or any line's: every line together (bundles).
local claim_id = ARGV[1]
local raw = redis.call('HGET', K.claims, claim_id)
local lines = nil
if raw then
  lines = bundle_of_line(claim_id)
else
  lines = bundle_line_ids(claim_id)
  if not lines then return {NOT_FOUND, '', ''} end
  claim_id = lines[1]
  raw = redis.call('HGET', K.claims, claim_id)
end
local c = parse_claim(raw)
if c.user ~= ARGV[2] then return {NOT_FOUND, '', ''} end
-- after-sale on_confirm: a retried confirm tells the engine to grant what is pending
local on_confirm = redis.call('HEXISTS', K.meta, 'ocf_drop')
if c.status == 'confirmed' then return {OK, c.status, c.deadline, on_confirm, lines or {claim_id}} end
if c.status == 'expired' then return {HOLD_EXPIRED, c.status, c.deadline} end
if c.status ~= 'held' then return {CONFLICT, c.status, c.deadline} end
-- A paid voucher's hold is paid at its own route (coupon_pay.lua issues its coupons).
if redis.call('HEXISTS', K.meta, 'cp_paid:' .. c.sku) == 1 then
  return {CONFLICT, c.status, c.deadline}
end
if now >= c.deadline then
  release_hold(now, claim_id, c, 'expired')
  release_bundle_rest(now, claim_id, 'expired')
  return {HOLD_EXPIRED, c.status, c.deadline}
end
local tickets = KEYS[NKEYS + 1] and redis.call('HGET', K.meta, 'tk_on') == '1'
local function confirm_one(id, one)
  redis.call('HINCRBY', K.stock, one.sku .. '.h', -one.qty)
  redis.call('HINCRBY', K.stock, one.sku .. '.s', one.qty)
  redis.call('HINCRBY', K.stock, one.sku .. '.rev', one.price * one.qty)  -- at its locked price
  redis.call('ZREM', K.deadlines, id)
  one.status = 'confirmed'
  redis.call('HSET', K.claims, id, format_claim(one))
  count('confirmed')
  local fields = {'claim', id, 'user', one.user, 'sku', one.sku, 'qty', one.qty,
                  'price', one.price}
  if ARGV[3] and ARGV[3] ~= '' then fields[#fields + 1] = 'idem'; fields[#fields + 1] = ARGV[3] end
  emit(now, 'claim_confirmed', fields)
  if tickets then
    redis.call('SADD', KEYS[NKEYS + 1], id)  -- its units are tickets (after-sale)
  end
  settle_offer(now, id, one, 'offer_accepted')
end
local confirmed = {}
for _, id in ipairs(lines or {claim_id}) do
  local one = id == claim_id and c or parse_claim(redis.call('HGET', K.claims, id))
  if one.status == 'held' then
    confirm_one(id, one)
    confirmed[#confirmed + 1] = id
  end
end
-- after-sale on_confirm: the buyer's pack per confirmed claim (each line of a bundle),
-- granted by the engine from the outbox (the drop lives in another slot): written in
-- this run, so a crash cannot lose it
if on_confirm == 1 and KEYS[NKEYS + 2] then
  local oc = redis.call('HMGET', K.meta, 'ocf_drop', 'ocf_sku')
  for _, id in ipairs(confirmed) do
    redis.call('HSET', KEYS[NKEYS + 2], 'confirm:' .. id, c.user .. '|' .. oc[1] .. '|' .. oc[2])
  end
end
return {OK, c.status, c.deadline, on_confirm, lines or {claim_id}}
