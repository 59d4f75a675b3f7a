-- coupon_redeem: a merchant redeems a coupon for an order; a pack loses one use.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     locator of the code (its signature checked by the engine)
-- ARGV[2]     the template the engine priced the order with (must be the coupon's)
-- ARGV[3]     merchant id     ARGV[4] order id     ARGV[5] order amount
-- ARGV[6]     discount, as the engine computed it for this order (discount.py)
-- ARGV[7]     time step of a rotating code, -1 for the static code
-- ARGV[8]     step length (ms)
-- ARGV[9]     redemption id (made by the engine)
-- ARGV[10]    fingerprint of the request (amount, the other codes, the lines)
-- ARGV[11]    the template revision the engine priced with (meta cp_rev:<template>, 0 absent)
-- ARGV[12]    usable windows 'start,end,...' (UTC ms) of a template with hours or days,
--             compiled by the engine (domain/coupons/rules.py); '' when it has none
-- ARGV[13]    the discount per line, JSON [[item, category, qty, amount, discount], ...]
--             for the event ('' for an order without lines)
-- Returns     {code, reason, redemption_id, coupon_id, discount, uses_left, status, ts}
--             reason: bad_code, used, expired, not_yet_valid, code_expired, merchant_cap,
--             template, outside_hours[:next_ms:wait_ms], ''; on OK, 'replayed' when this
--             order's redemption was made before
--
-- Idempotent per merchant, order and coupon: the same redemption again answers
-- the first answer (another request under that order is IDEMPOTENCY_MISMATCH).
-- Checks the coupon's status and validity, the rotating code's step by server
-- time, and the merchant's daily cap for this drop, before any write.
-- Merchant scope, regions, cart lines, thresholds and stacking are template
-- rules the engine checks and prices (domain/coupons/rules.py, discount.py)
-- before this call; a live template change since then bumps the revision and
-- the redemption is refused ('template': the engine prices it again), so what
-- is written always follows the rules in force. The time windows are decided
-- here, on this script's clock.
--@include common
--@include coupons

local loc, tpl, merchant, order = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local amount, discount, step = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local step_ms, rid, fingerprint = tonumber(ARGV[8]), ARGV[9], ARGV[10]
local rev, spans, per_line = ARGV[11] or '0', ARGV[12] or '', ARGV[13] or ''

local now = now_ms()
local function answer(code, reason, r_id, coupon, off, uses, status, ts)
  return {code, reason or '', r_id or '', coupon or '', off or 0, uses or 0, status or '',
          ts or now}
end

local coupon_id = redis.call('HGET', C.codes, loc)
if not coupon_id then return answer(NOT_FOUND, 'bad_code') end  -- re-coded by a gift
local order_field = 'o|' .. merchant .. '|' .. order .. '|' .. coupon_id
local prior = redis.call('HGET', C.redeems, order_field)
if prior then
  local r = parse_redemption(redis.call('HGET', C.redeems, prior))
  if r.fingerprint ~= fingerprint then return answer(IDEMPOTENCY_MISMATCH) end
  local c = parse_coupon(redis.call('HGET', C.cpn, coupon_id))
  return answer(OK, 'replayed', prior, coupon_id, r.discount, c.uses, r.status, r.ts)
end
if redis.call('HGET', K.meta, 'fenced') == '1' then return answer(FENCED) end
local c = catch_up(coupon_id, parse_coupon(redis.call('HGET', C.cpn, coupon_id)))
if c.tpl ~= tpl then return answer(CONFLICT, 'template') end
if (redis.call('HGET', K.meta, 'cp_rev:' .. tpl) or '0') ~= rev then
  return answer(CONFLICT, 'template')
end
if step >= 0 then
  local current = math.floor(now / step_ms)
  if step ~= current and step ~= current - 1 then return answer(CONFLICT, 'code_expired') end
end
if c.status ~= 'active' then return answer(CONFLICT, c.status, '', coupon_id) end
if now >= c.vt then
  expire_coupon(now, coupon_id, c)
  return answer(CONFLICT, 'expired', '', coupon_id)
end
if now < c.vf then return answer(CONFLICT, 'not_yet_valid', '', coupon_id) end
if spans ~= '' then
  local inside, next_start = false, nil
  local bounds = {}
  for n in string.gmatch(spans, '[^,]+') do bounds[#bounds + 1] = tonumber(n) end
  for i = 1, #bounds - 1, 2 do
    if bounds[i] <= now and now < bounds[i + 1] then inside = true; break end
    if bounds[i] > now then next_start = bounds[i]; break end
  end
  if not inside then
    if next_start and next_start < c.vt then
      return answer(CONFLICT, 'outside_hours:' .. next_start .. ':' .. (next_start - now), '',
                    coupon_id)
    end
    return answer(CONFLICT, 'outside_hours', '', coupon_id)
  end
end
local day = math.floor(now / DAY_MS)
local cap_field = day .. '|m|' .. merchant
local cap = meta_limit('cp_mcap')
if cap >= 0 and tonumber(redis.call('HGET', C.cday, cap_field) or '0') >= cap then
  return answer(LIMIT_EXCEEDED, 'merchant_cap', '', coupon_id)
end

-- All checks passed: write.
c.uses = c.uses - 1
if c.uses == 0 then c.status = 'used' end
redis.call('HSET', C.cpn, coupon_id, format_coupon(c))
redis.call('HINCRBY', C.cday, cap_field, 1)
redis.call('HSET', C.redeems, rid, format_redemption({status = 'redeemed', coupon = coupon_id,
  merchant = merchant, order = order, amount = amount, discount = discount, ts = now,
  fingerprint = fingerprint, tpl = c.tpl, day = day}), order_field, rid)
stat('redeemed', 1, c.tpl, day, merchant)
stat('discount', discount, c.tpl, day, merchant)
local fields = {'coupon', coupon_id, 'redemption', rid, 'merchant', merchant,
                'order', order, 'amount', amount, 'discount', discount,
                'uses_left', c.uses, 'user', c.owner, 'template', c.tpl, 'fp', fingerprint}
if per_line ~= '' then
  fields[#fields + 1] = 'lines'
  fields[#fields + 1] = per_line
end
emit(now, 'coupon_redeemed', fields)
return answer(OK, '', rid, coupon_id, discount, c.uses, 'redeemed', now)
