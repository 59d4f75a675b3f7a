-- refund: a sold claim gives back some or all of its units, at most once each.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the campaign's refunds hash (claim_id -> refund record)
-- KEYS[NKEYS + 2] the campaign's refund totals by SKU ("<sku>.u", "<sku>.amt")
-- KEYS[NKEYS + 3] the operation's idempotency key: a retry answers the first
--             answer (a refund_answer record)
-- KEYS[NKEYS + 4] the campaign's tickets hash (a ticketed campaign's refunded tickets
--             are marked there; checked-in ones cannot be refunded)
-- ARGV[1]     claim_id; a bundle's refunds every line whole (its units 0), each line's
--             claim_refunded event under the one idempotency key, the answer their sums
-- ARGV[2]     the buyer asking, or '' when an operator refunds (any claim, any time)
-- ARGV[3]     units to refund; 0: every unit not yet refunded
-- ARGV[4]     actor (who asked, for the event)
-- ARGV[5]     reason ('' none)
-- ARGV[6]     how long to remember the answer, in ms
-- ARGV[7]     the request's fingerprint (a retry under the same key must match it)
-- Returns     {code, detail, units, left, amount}; CAMPAIGN_MISSING when the campaign
--             has no state (api.healing asks the store whether it is being healed);
--             detail 'replayed': a retry answered with the first answer (nothing done)
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
  return {p.code, 'replayed', p.units, p.left, p.amount}
end
local present = campaign_present()
if present ~= OK then return {present, present == FENCED and 'fenced' or '', 0, 0, 0} end
local claim_id, buyer, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- A bundle's id refunds every line whole (a line's own id refunds that line alone).
local ids = {claim_id}
if redis.call('HEXISTS', K.claims, claim_id) == 0 then
  ids = bundle_line_ids(claim_id)
  if not ids then return {NOT_FOUND, 'no_claim', 0, 0, 0} end
end
local bundle = ids[1] ~= claim_id
local m = redis.call('HMGET', K.meta, 'fenced', 'rf_to', 'rf_window_ms', 'tk_on')
local now = now_ms()

-- What refunding `id` does, or its refusal {code, detail, units, left, amount}.
local function plan_of(id)
  local c = parse_claim(redis.call('HGET', K.claims, id))
  if buyer ~= '' and c.user ~= buyer then return nil, {NOT_FOUND, 'no_claim', 0, 0, 0} end
  if m[1] == '1' then return nil, {FENCED, 'fenced', 0, 0, 0} end
  -- A paid voucher is refunded at its own route, which voids its coupons (coupon_refund.lua).
  if redis.call('HEXISTS', K.meta, 'cp_paid:' .. c.sku) == 1 then
    return nil, {CONFLICT, 'paid_voucher_refund', 0, 0, 0}
  end
  if bundle and want ~= 0 then  -- which line's units? the bundle is refunded whole
    return nil, {CONFLICT, 'refund_bundle_units', 0, 0, 0}
  end
  local done = {units = 0, amount = 0}
  local rraw = redis.call('HGET', R, id)
  if rraw then done = parse_refund(rraw) end
  local left = c.qty - done.units
  if m[4] == '1' and c.status == 'confirmed' then  -- tickets moved out one by one (transfers)
    for i = 1, c.qty do
      local t = redis.call('HGET', T, id .. '-' .. i)
      if t and parse_ticket(t).status == 'moved' then left = left - 1 end
    end
    if left == 0 then return nil, {CONFLICT, 'refund_exceeds:0', 0, 0, 0} end  -- every one moved
  end
  if c.status == 'refunded' and want == 0 then  -- a whole refund retried: nothing left to do
    return {id = id, c = c, n = 0, left = 0}
  end
  if c.status ~= 'confirmed' and c.status ~= 'refunded' then
    return nil, {CONFLICT, 'refund_not_sold', 0, 0, 0}
  end
  if buyer ~= '' then
    local window = tonumber(m[3] or '-1')
    if window < 0 then return nil, {CONFLICT, 'refund_not_allowed', 0, left, 0} end
    if now > c.created + window then
      return nil, {CONFLICT, 'refund_window_closed:' .. math.floor(window / 1000), 0, left, 0}
    end
  end
  local n = want == 0 and left or want
  if n > left then return nil, {CONFLICT, 'refund_exceeds:' .. left, 0, left, 0} end
  local voided = {}
  if m[4] == '1' then
    for i = c.qty, 1, -1 do
      if #voided < n and redis.call('HEXISTS', T, id .. '-' .. i) == 0 then
        voided[#voided + 1] = i
      end
    end
    if #voided < n then  -- the others are checked in (or refunded already)
      return nil, {CONFLICT, 'refund_exceeds:' .. #voided, 0, left, 0}
    end
  end
  return {id = id, c = c, n = n, left = left, done = done, voided = voided,
          amount = n * c.price}
end

-- Every line checked before the first write.
local plans, units, left_after, amount = {}, 0, 0, 0
for i, id in ipairs(ids) do
  local p, refused = plan_of(id)
  if not p then return refused end
  plans[i] = p
  units, left_after, amount = units + p.n, left_after + p.left - p.n, amount + (p.amount or 0)
end
if units == 0 then return {OK, '', 0, 0, 0} end
local to = m[2] or 'restock'

for _, p in ipairs(plans) do
  local c, n, id = p.c, p.n, p.id
  if n > 0 then
    redis.call('HINCRBY', K.stock, c.sku .. '.s', -n)
    if to == 'retire' then
      redis.call('HINCRBY', K.stock, c.sku .. '.r', -n)
    else
      redis.call('HINCRBY', K.stock, c.sku .. '.a', n)
    end
    units_add(c.user, c.sku, -n)  -- refunded units no longer count to the limit
    if c.person ~= '' then redis.call('HINCRBY', K.users, '~p|' .. c.person, -n) end  -- per_person
    redis.call('HSET', R, id, format_refund({units = p.done.units + n,
                                             amount = p.done.amount + p.amount}))
    redis.call('HINCRBY', TOTALS, c.sku .. '.u', n)
    redis.call('HINCRBY', TOTALS, c.sku .. '.amt', p.amount)
    if n == p.left then
      c.status = 'refunded'
      redis.call('HSET', K.claims, id, format_claim(c))
    end
    for _, i in ipairs(p.voided) do
      redis.call('HSET', T, id .. '-' .. i,
                 format_ticket({status = 'refunded', gate = '', at = now, scanner = ''}))
    end
    count('refunds')
    emit(now, 'claim_refunded', {'claim', id, 'user', c.user, 'sku', c.sku, 'qty', n,
                                 'amount', p.amount, 'left', p.left - n, 'to', to,
                                 'actor', ARGV[4], 'reason', ARGV[5],
                                 'buyer', buyer ~= '' and 1 or 0, 'idem', OP, 'fp', ARGV[7],
                                 'tickets', table.concat(p.voided, ',')})
    if to ~= 'retire' then offer_waitlist(now, c.sku) end
  end
end
redis.call('SET', OP, format_refund_answer({fingerprint = ARGV[7], code = OK, units = units,
                                            left = left_after, amount = amount}),
           'PX', tonumber(ARGV[6]))
return {OK, '', units, left_after, amount}
