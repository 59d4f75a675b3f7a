-- grant: ops (or a check-in's outbox) grant a drop's coupons to users, one unit of a
-- SKU each, keyed: a grant whose claim id exists already answers again, unchanged.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- KEYS[NCKEYS + 1..] each grant's wallet
-- ARGV[1]     the SKU (a template or pack of the drop)
-- ARGV[2]     the source, kept in the events ("ops:<name>" or "checkin:<campaign>")
-- ARGV[3..]   four per grant: claim_id (derived from the grant's key by the
--             engine), user, seed of its coupon ids and locators (derived too),
--             and the KEYS index of the user's wallet
-- Returns     per grant: code, reason, claim_id, n coupons
--
-- Grants bypass the claim gates (state, schedule, waiting room, guard, the
-- per-user, per-day and per-person limits) but not the drop's stock or budget
-- (refused: SOLD_OUT 'stock' or 'budget'). The granted units count as the
-- user's for later claims. Events as a coupon claim's, the claim_held marked
-- with its grant source: claim_held, claim_confirmed, coupon_issued each.
--@include common
--@include coupons

local sku, source = ARGV[1], ARGV[2]
local out = {}
if redis.call('HGET', K.meta, 'coupons') ~= '1' then
  for i = 3, #ARGV, 4 do
    out[#out + 1] = NOT_FOUND; out[#out + 1] = 'not_a_drop'; out[#out + 1] = ''
    out[#out + 1] = 0
  end
  return out
end
local now = now_ms()
release_due_waves(now)
local cid = redis.call('HGET', K.meta, 'id')
local fenced = redis.call('HGET', K.meta, 'fenced') == '1'
local budget = tonumber(redis.call('HGET', K.meta, 'cp_budget') or '-1')
local value_total = tonumber(redis.call('HGET', C.cstats, '*|value') or '0')
local sku_cfg = redis.call('HGET', K.meta, 'cp_sku:' .. sku)
local cfg = sku_cfg and cjson.decode(sku_cfg)
local tpls = {}
for _, tid in ipairs(cfg and cfg.t or {}) do tpls[tid] = template(tid) end
local day = math.floor(now / DAY_MS)

local function answer(code, reason, claim_id, n)
  out[#out + 1] = code; out[#out + 1] = reason; out[#out + 1] = claim_id or ''
  out[#out + 1] = n or 0
end

for i = 3, #ARGV, 4 do
  local claim_id, user, seed, wallet = ARGV[i], ARGV[i + 1], ARGV[i + 2],
                                       KEYS[tonumber(ARGV[i + 3])]
  local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.price')
  if redis.call('HEXISTS', K.claims, claim_id) == 1 then  -- granted before: the same answer
    answer(OK, 'again', claim_id, cfg and #cfg.t or 0)
  elseif fenced then
    answer(FENCED, 'fenced')
  elseif not s[1] or not cfg then
    answer(NOT_FOUND, 'no_sku')
  elseif tonumber(s[1]) < 1 then
    answer(SOLD_OUT, 'stock')
  elseif budget >= 0 and value_total + cfg.v > budget then
    answer(SOLD_OUT, 'budget')
  else
    redis.call('HINCRBY', K.stock, sku .. '.a', -1)
    redis.call('HINCRBY', K.stock, sku .. '.s', 1)
    units_add(user, sku, 1)
    redis.call('HSET', K.claims, claim_id, format_claim({status = 'confirmed', user = user,
      sku = sku, qty = 1, deadline = now, price = s[2], created = now}))
    count('grants')
    emit(now, 'claim_held', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', 1,
                             'price', s[2], 'deadline', now, 'grant', source})
    emit(now, 'claim_confirmed', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', 1,
                                  'price', s[2]})
    local n = 0
    for _, tid in ipairs(cfg.t) do
      local t = tpls[tid]
      n = n + 1
      issue_coupon(now, cid, seed, n, user, wallet, claim_id, tid, t)
      stat('issued', 1, tid, day)
      stat('uses', t.u, tid, day)
      stat('value', t.f * t.u, tid, day)
      value_total = value_total + t.f * t.u
    end
    answer(OK, '', claim_id, n)
  end
end
return out
