-- coupon_refund: a paid voucher whose coupons are all unused is refunded: its coupons
-- are voided and its face value goes back to the drop's budget, at most once.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     claim_id
-- ARGV[2]     user id of the voucher's buyer (another user's claim is NOT_FOUND)
-- ARGV[3]     actor (who asked: the buyer's user id, or the admin)
-- ARGV[4]     the caller's Idempotency-Key, or '' (kept in the event)
-- Returns     {code, reason, then on OK: sku, qty, price, deadline_ms, payment,
--             refunded amount, 'refunded', coupon ids...}; reason not_a_voucher,
--             voucher_unpaid (a hold not yet paid), voucher_used (a coupon used,
--             partly used, expired, given away or offered as a gift)
--
-- Refunding a refunded voucher answers OK again with the same amount (a retried
-- call). The rule (docs/paid-vouchers.md): every coupon of the claim must be
-- active, unused and still the buyer's; the whole price is refunded; the face
-- value returns to the budget; the unit stays sold (stock counts what was sold).
-- Event voucher_refunded {claim, user, actor, amount, value, coupons, idem}.
--@include common
--@include coupons

local now = now_ms()
local claim_id, user, actor, idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- The campaign first (a claim missing from a lost or fenced drop may come back).
local present = campaign_present()
if present ~= OK then return {present, ''} end
local raw = redis.call('HGET', K.claims, claim_id)
if not raw then return {NOT_FOUND, 'not_found'} end
local c = parse_claim(raw)
if c.user ~= user then return {NOT_FOUND, 'not_found'} end
local praw = redis.call('HGET', C.cusers, 'pv|' .. claim_id)
if not praw then return {CONFLICT, 'not_a_voucher'} end
local pv = parse_paid(praw)
local cid = redis.call('HGET', K.meta, 'id')
local ids = {}
local function answer(code, reason)
  if code ~= OK then return {code, reason} end
  local out = {code, reason, c.sku, c.qty, c.price, c.deadline, pv.payment, pv.refunded,
               pv.status}
  for _, id in ipairs(ids) do out[#out + 1] = id end
  return out
end
-- The claim's coupons: their ids come from the claim id (coupon_pay.lua).
local i = 1
while true do
  local id = cid .. '.' .. string.sub(redis.sha1hex(claim_id .. '#' .. i), 1, 20)
  if redis.call('HEXISTS', C.cpn, id) == 0 then break end
  ids[#ids + 1] = id
  i = i + 1
end
if pv.status == 'refunded' then return answer(OK, '') end
if pv.status ~= 'paid' then return answer(CONFLICT, 'voucher_unpaid') end
if redis.call('HGET', K.meta, 'fenced') == '1' then return answer(FENCED, '') end
local coupons, value = {}, 0
for _, id in ipairs(ids) do
  local cp = catch_up(id, parse_coupon(redis.call('HGET', C.cpn, id)))
  local t = template(cp.tpl)
  if cp.status ~= 'active' or cp.owner ~= user or cp.gift ~= '' or not t or cp.uses ~= t.u then
    return answer(CONFLICT, 'voucher_used')
  end
  coupons[#coupons + 1] = cp
  value = value + t.f * t.u
end

-- All checks passed: write.
local day = math.floor(now / DAY_MS)
for k, cp in ipairs(coupons) do
  cp.status = 'refunded'
  redis.call('HSET', C.cpn, ids[k], format_coupon(cp))
  redis.call('ZREM', C.cexp, ids[k])
  local t = template(cp.tpl)
  stat('refunded', 1, cp.tpl, day)
  stat('value', -(t.f * t.u), cp.tpl, day)  -- the face value goes back to the budget
end
pv.status, pv.refunded = 'refunded', c.price * c.qty
redis.call('HSET', C.cusers, 'pv|' .. claim_id, format_paid(pv))
count('voucher_refunds')
emit(now, 'voucher_refunded', {'claim', claim_id, 'user', user, 'sku', c.sku, 'qty', c.qty,
                               'actor', actor, 'amount', pv.refunded, 'value', value,
                               'coupons', table.concat(ids, ','), 'idem', idem})
return answer(OK, '')
