-- coupon_pay: a paid voucher's hold is paid: the claim is confirmed and its coupons
-- issued, at most once.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- KEYS[NCKEYS + 1] the caller's wallet (the coupons go there)
-- ARGV[1]     claim_id
-- ARGV[2]     user id of the caller (another user's claim is NOT_FOUND)
-- ARGV[3]     the payment reference
-- ARGV[4]     the caller's Idempotency-Key, or '' (kept in the event)
-- Returns     {code, reason, then on OK: sku, qty, price, deadline_ms, payment,
--             refunded amount, status of the voucher (paid or refunded), coupon ids...};
--             reason
--             not_a_voucher, voucher_paid_other (paid with another payment),
--             hold_expired, no_sku
--
-- Paying a paid hold again with the same payment answers OK again (a retried
-- call); a hold past its deadline is lapsed here and now (HOLD_EXPIRED), as the
-- sweeper would. Coupon ids and locators are derived from the claim id, so
-- recovery and a retry name the same coupons. Events: claim_confirmed,
-- voucher_paid, then coupon_issued for each coupon.
--@include common
--@include coupons

local now = now_ms()
local claim_id, user, payment, idem = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wallet = KEYS[NCKEYS + 1]
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
if redis.call('HGET', K.meta, 'fenced') == '1' then return {FENCED, ''} end
local cid = redis.call('HGET', K.meta, 'id')
local cfg_raw = redis.call('HGET', K.meta, 'cp_sku:' .. c.sku)
local cfg = cfg_raw and cjson.decode(cfg_raw)
local n = cfg and c.qty * #cfg.t or 0
local function ids()
  local out = {}
  for i = 1, n do
    out[i] = cid .. '.' .. string.sub(redis.sha1hex(claim_id .. '#' .. i), 1, 20)
  end
  return out
end
local function answer(code, reason)
  if code ~= OK then return {code, reason} end
  local out = {code, reason, c.sku, c.qty, c.price, c.deadline, pv.payment, pv.refunded,
               pv.status}
  for _, id in ipairs(ids()) do out[#out + 1] = id end
  return out
end
if pv.status ~= 'held' then  -- paid (or refunded since): the same payment is a retry
  if pv.payment == payment then return answer(OK, '') end
  return answer(CONFLICT, 'voucher_paid_other')
end
if c.status ~= 'held' then return answer(HOLD_EXPIRED, 'hold_expired') end
if now >= c.deadline then
  release_hold(now, claim_id, c, 'expired')
  return answer(HOLD_EXPIRED, 'hold_expired')
end
if not cfg then return answer(NOT_FOUND, 'no_sku') end
local tpls = {}
for _, tid in ipairs(cfg.t) do
  tpls[tid] = template(tid)
  if not tpls[tid] then return answer(NOT_FOUND, 'no_sku') end
end

-- All checks passed: write.
local day = math.floor(now / DAY_MS)
redis.call('HINCRBY', K.stock, c.sku .. '.h', -c.qty)
redis.call('HINCRBY', K.stock, c.sku .. '.s', c.qty)
redis.call('ZREM', K.deadlines, claim_id)
c.status = 'confirmed'
redis.call('HSET', K.claims, claim_id, format_claim(c))
pv.status, pv.payment = 'paid', payment
redis.call('HSET', C.cusers, 'pv|' .. claim_id, format_paid(pv))
count('confirmed')
local ev = {'claim', claim_id, 'user', user, 'sku', c.sku, 'qty', c.qty, 'price', c.price}
if idem ~= '' then ev[#ev + 1] = 'idem'; ev[#ev + 1] = idem end
emit(now, 'claim_confirmed', ev)
emit(now, 'voucher_paid', {'claim', claim_id, 'user', user, 'sku', c.sku, 'qty', c.qty,
                           'amount', c.price * c.qty, 'payment', payment, 'idem', idem})
local i = 0
for _ = 1, c.qty do
  for _, tid in ipairs(cfg.t) do
    i = i + 1
    local t = tpls[tid]
    issue_coupon(now, cid, claim_id, i, user, wallet, claim_id, tid, t)
    stat('issued', 1, tid, day)
    stat('uses', t.u, tid, day)
    stat('value', t.f * t.u, tid, day)
  end
end
return answer(OK, '')
