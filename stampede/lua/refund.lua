-- refund: a sold claim gives back some or all of its units, at most once each.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the campaign's refunds hash (claim_id -> refund record)
-- KEYS[NKEYS + 2] the campaign's refund totals by SKU ("<sku>.u", "<sku>.amt")
-- KEYS[NKEYS + 3] the operation's idempotency key: a retry answers the first
--             answer (a refund_answer record)
-- KEYS[NKEYS + 4] the campaign's tickets hash (a ticketed campaign's refunded tickets
--             are marked there; checked-in ones cannot be refunded)
-- ARGV[1]     claim_id
-- ARGV[2]     the buyer asking, or '' when an operator refunds (any claim, any time)
-- ARGV[3]     units to refund; 0: every unit not yet refunded
-- ARGV[4]     actor (who asked, for the event)
-- ARGV[5]     reason ('' none)
-- ARGV[6]     how long to remember the answer, in ms
-- ARGV[7]     the request's fingerprint (a retry under the same key must match it)
-- Returns     {code, detail, units, left, amount}; CAMPAIGN_MISSING when the campaign
--             has no state (api.healing asks the store whether it is being healed)
--
-- Where the units go is the campaign's policy (meta rf_to): 'restock' gives
-- them to the SKU's waitlist head first and only then to available stock;
-- 'retire' withdraws them (released drops with sold). The refunded units no
-- longer count against the buyer's limits: per-user, per-SKU and per-person
-- (the person its record names). A buyer may refund only
-- their own claim, within meta rf_window_ms of buying it (-1: never). In a
-- ticketed campaign (meta tk_on) the highest-numbered tickets not checked in
-- are the ones refunded, and a ticket transferred alone (moved) is no longer
-- the claim's to refund.
-- Every check comes before the first write.
--@include common
--@include refund_records

local R, TOTALS, OP, T = KEYS[NKEYS + 1], KEYS[NKEYS + 2], KEYS[NKEYS + 3], KEYS[NKEYS + 4]
local prior = redis.call('GET', OP)
if prior then
  local p = parse_refund_answer(prior)
  if p.fingerprint ~= ARGV[7] then return {IDEMPOTENCY_MISMATCH, '', 0, 0, 0} end
  return {p.code, '', p.units, p.left, p.amount}
end
local present = campaign_present()
if present ~= OK then return {present, present == FENCED and 'fenced' or '', 0, 0, 0} end
local claim_id, buyer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('HGET', K.claims, claim_id)
if not raw then return {NOT_FOUND, 'no_claim', 0, 0, 0} end
local c = parse_claim(raw)
if buyer ~= '' and c.user ~= buyer then return {NOT_FOUND, 'no_claim', 0, 0, 0} end
local m = redis.call('HMGET', K.meta, 'fenced', 'rf_to', 'rf_window_ms', 'tk_on')
if m[1] == '1' then return {FENCED, 'fenced', 0, 0, 0} end
-- A paid voucher is refunded at its own route, which voids its coupons (coupon_refund.lua).
if redis.call('HEXISTS', K.meta, 'cp_paid:' .. c.sku) == 1 then
  return {CONFLICT, 'paid_voucher_refund', 0, 0, 0}
end
local done = {units = 0, amount = 0}
local rraw = redis.call('HGET', R, claim_id)
if rraw then done = parse_refund(rraw) end
local left = c.qty - done.units
if m[4] == '1' and c.status == 'confirmed' then  -- tickets moved out one by one (transfers)
  for i = 1, c.qty do
    local t = redis.call('HGET', T, claim_id .. '-' .. i)
    if t and parse_ticket(t).status == 'moved' then left = left - 1 end
  end
  if left == 0 then return {CONFLICT, 'refund_exceeds:0', 0, 0, 0} end  -- every one moved
end
if c.status == 'refunded' and want == 0 then  -- a whole refund retried: nothing left to do
  return {OK, '', 0, 0, 0}
end
if c.status ~= 'confirmed' and c.status ~= 'refunded' then
  return {CONFLICT, 'refund_not_sold', 0, 0, 0}
end
local now = now_ms()
if buyer ~= '' then
  local window = tonumber(m[3] or '-1')
  if window < 0 then return {CONFLICT, 'refund_not_allowed', 0, left, 0} end
  if now > c.created + window then
    return {CONFLICT, 'refund_window_closed:' .. math.floor(window / 1000), 0, left, 0}
  end
end
local n = want == 0 and left or want
if n > left then return {CONFLICT, 'refund_exceeds:' .. left, 0, left, 0} end
local voided = {}
if m[4] == '1' then
  for i = c.qty, 1, -1 do
    if #voided < n and redis.call('HEXISTS', T, claim_id .. '-' .. i) == 0 then
      voided[#voided + 1] = i
    end
  end
  if #voided < n then  -- the others are checked in (or refunded already)
    return {CONFLICT, 'refund_exceeds:' .. #voided, 0, left, 0}
  end
end
local amount = n * c.price
local to = m[2] or 'restock'

redis.call('HINCRBY', K.stock, c.sku .. '.s', -n)
if to == 'retire' then
  redis.call('HINCRBY', K.stock, c.sku .. '.r', -n)
else
  redis.call('HINCRBY', K.stock, c.sku .. '.a', n)
end
units_add(c.user, c.sku, -n)  -- refunded units no longer count to the limit
if c.person ~= '' then redis.call('HINCRBY', K.users, '~p|' .. c.person, -n) end  -- per_person too
redis.call('HSET', R, claim_id, format_refund({units = done.units + n,
                                               amount = done.amount + amount}))
redis.call('HINCRBY', TOTALS, c.sku .. '.u', n)
redis.call('HINCRBY', TOTALS, c.sku .. '.amt', amount)
if n == left then
  c.status = 'refunded'
  redis.call('HSET', K.claims, claim_id, format_claim(c))
end
for _, i in ipairs(voided) do
  redis.call('HSET', T, claim_id .. '-' .. i,
             format_ticket({status = 'refunded', gate = '', at = now, scanner = ''}))
end
count('refunds')
emit(now, 'claim_refunded', {'claim', claim_id, 'user', c.user, 'sku', c.sku, 'qty', n,
                             'amount', amount, 'left', left - n, 'to', to,
                             'actor', ARGV[4], 'reason', ARGV[5],
                             'buyer', buyer ~= '' and 1 or 0, 'idem', OP, 'fp', ARGV[7],
                             'tickets', table.concat(voided, ',')})
if to ~= 'retire' then offer_waitlist(now, c.sku) end
redis.call('SET', OP, format_refund_answer({fingerprint = ARGV[7], code = OK, units = n,
                                            left = left - n, amount = amount}),
           'PX', tonumber(ARGV[6]))
return {OK, '', n, left - n, amount}
