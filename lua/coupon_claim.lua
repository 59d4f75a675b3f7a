-- coupon_claim: claim a SKU of a coupon drop; final at once, it issues the coupons.
--
-- KEYS[1..13] the campaign key set (include/common.lua)
-- KEYS[14..21] the drop's coupon keys (include/coupons.lua)
-- KEYS[22]    the claimant's wallet (set of coupon ids ever owned in this drop)
-- KEYS[23]    the idempotency key, when the claim carries one
-- ARGV[1]     claim_id (made by the engine: a retried call finds it and answers again)
-- ARGV[2]     user          ARGV[3] sku          ARGV[4] qty
-- ARGV[5]     admission token expiry (ms) as verified by the engine, -1 if none
-- ARGV[6]     identity hash of the real person ('' if the token has none)
-- ARGV[7]     random seed for the coupon ids and locators
-- ARGV[8]     how long to remember an idempotent answer (ms)
-- ARGV[9]     fingerprint of the request (for idempotency mismatches)
-- Returns     {code, reason, claim_id, now_ms, coupon_id...}; reason names the
--             refusal: budget, per_day, user_day, person, identity_required, limit, ''
--
-- Checks, in order, before any write: idempotency, the campaign's gates (state,
-- schedule, fence, waiting-room admission), SKU and quantity, per-user limits
-- (held + sold, campaign and SKU, plus gifts that count), per-user-per-day,
-- per-person, stock, total per day, budget. A gift pack issues all its coupons
-- or none. Events: claim_held and claim_confirmed (the stock's story, as a sale),
-- then coupon_issued for each coupon.
--@include common
--@include coupons

local claim_id, user, sku, qty = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local admission, identity, seed = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local idem_ttl, fingerprint = tonumber(ARGV[8]), ARGV[9]
local wallet, idem = KEYS[NCKEYS + 1], KEYS[NCKEYS + 2]

local now = now_ms()
release_due_waves(now)

local function coupon_id(i)
  return redis.call('HGET', K.meta, 'id') .. '.' .. string.sub(redis.sha1hex(seed .. '#' .. i), 1, 20)
end

local function answer(code, reason, ids, at)
  local out = {code, reason or '', code == OK and claim_id or '', at or now}
  for _, id in ipairs(ids or {}) do out[#out + 1] = id end
  return out
end

local function remember(code, reason, ids)
  if idem then
    redis.call('SET', idem, table.concat({fingerprint, code, reason or '', claim_id, now,
                                          table.concat(ids or {}, ',')}, '|'), 'PX', idem_ttl)
  end
end

if idem then
  local prior = redis.call('GET', idem)
  if prior then
    local fp, code, reason, cid, at, ids = string.match(prior,
      '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
    if fp ~= fingerprint then return {IDEMPOTENCY_MISMATCH, '', '', now} end
    local list = {}
    for id in string.gmatch(ids, '[^,]+') do list[#list + 1] = id end
    claim_id = cid
    return answer(tonumber(code), reason, list, tonumber(at))
  end
end

local sku_cfg = redis.call('HGET', K.meta, 'cp_sku:' .. sku)
local n_per_unit = sku_cfg and #cjson.decode(sku_cfg).t or 0
if redis.call('HEXISTS', K.claims, claim_id) == 1 then  -- a retried call: answer again
  local c = parse_claim(redis.call('HGET', K.claims, claim_id))
  local ids = {}
  for i = 1, c.qty * n_per_unit do ids[i] = coupon_id(i) end
  return answer(OK, '', ids, c.created)
end

-- Refusals by state are "try later" answers, not remembered.
local gate = sale_gate(now, true)
if gate ~= OK then return answer(gate) end
if redis.call('HGET', K.meta, 'wr_on') == '1' and not admitted(now, user, admission) then
  return answer(ADMISSION_REQUIRED)
end
local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.lim', sku .. '.price')
if not s[1] or not sku_cfg then return answer(NOT_FOUND) end
local avail, sku_lim = tonumber(s[1]), tonumber(s[2])
local max_qty = tonumber(redis.call('HGET', K.meta, 'max_qty') or '1')
if qty < 1 or qty > max_qty then return answer(INVALID) end
local cfg = cjson.decode(sku_cfg)

local function refuse(code, reason)
  remember(code, reason)
  return answer(code, reason)
end

local day = math.floor(now / DAY_MS)
local per_user = meta_limit('per_user')
local u = redis.call('HMGET', K.users, user, user .. '|' .. sku)
local gifts = tonumber(redis.call('HGET', C.cusers, 'g|' .. user) or '0')
local total, per_sku = tonumber(u[1] or '0') + gifts, tonumber(u[2] or '0')
if (per_user >= 0 and total + qty > per_user) or (sku_lim >= 0 and per_sku + qty > sku_lim) then
  return refuse(LIMIT_EXCEEDED, 'limit')
end
local user_day = meta_limit('cp_user_day')
local day_field, user_day_field = tostring(day), day .. '|u|' .. user
local d = redis.call('HMGET', C.day, day_field, user_day_field)
if user_day >= 0 and tonumber(d[2] or '0') + qty > user_day then
  return refuse(LIMIT_EXCEEDED, 'user_day')
end
local per_person = meta_limit('cp_person')
if per_person >= 0 then
  if identity == '' then return answer(LIMIT_EXCEEDED, 'identity_required') end
  if tonumber(redis.call('HGET', C.cusers, 'p|' .. identity) or '0') + qty > per_person then
    return refuse(LIMIT_EXCEEDED, 'person')
  end
end
if avail < qty then return refuse(SOLD_OUT, 'stock') end
local per_day = meta_limit('cp_per_day')
if per_day >= 0 and tonumber(d[1] or '0') + qty > per_day then
  return refuse(SOLD_OUT, 'per_day')
end
local budget = meta_limit('cp_budget')
local value = cfg.v * qty
if budget >= 0 and tonumber(redis.call('HGET', C.stats, '*|value') or '0') + value > budget then
  return refuse(SOLD_OUT, 'budget')
end
local tpls = {}
for _, tid in ipairs(cfg.t) do
  tpls[tid] = tpls[tid] or template(tid)
  if not tpls[tid] then return answer(NOT_FOUND) end
end

-- All checks passed: write.
redis.call('HINCRBY', K.stock, sku .. '.a', -qty)
redis.call('HINCRBY', K.stock, sku .. '.s', qty)
redis.call('HINCRBY', K.users, user, qty)
redis.call('HINCRBY', K.users, user .. '|' .. sku, qty)
redis.call('HSET', K.claims, claim_id, format_claim({status = 'confirmed', user = user,
  sku = sku, qty = qty, deadline = now, price = s[3], created = now}))
redis.call('HINCRBY', C.day, day_field, qty)
redis.call('HINCRBY', C.day, user_day_field, qty)
if per_person >= 0 then redis.call('HINCRBY', C.cusers, 'p|' .. identity, qty) end
if redis.call('HGET', K.meta, 'wr_on') == '1' then redis.call('ZREM', K.admitted, user) end
count('coupon_claims')
local ev = {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty, 'price', s[3],
            'deadline', now}
if idem then
  ev[#ev + 1] = 'idem'; ev[#ev + 1] = idem
  ev[#ev + 1] = 'fp'; ev[#ev + 1] = fingerprint
end
emit(now, 'claim_held', ev)
emit(now, 'claim_confirmed', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty,
                              'price', s[3]})
local ids = {}
for _ = 1, qty do
  for _, tid in ipairs(cfg.t) do
    local t = tpls[tid]
    local id = coupon_id(#ids + 1)
    local vf, vt = t.vf, t.vt
    if t.vd >= 0 then vf, vt = now, now + t.vd * DAY_MS end
    local loc = new_locator(seed, #ids + 1)
    redis.call('HSET', C.cpn, id, format_coupon({status = 'active', owner = user, tpl = tid,
      uses = t.u, vf = vf, vt = vt, loc = loc, claimed = now, gift = '', claim = claim_id}))
    redis.call('HSET', C.codes, loc, id)
    redis.call('ZADD', C.exp, vt, id)
    redis.call('SADD', wallet, id)
    stat('issued', 1, tid, day)
    stat('uses', t.u, tid, day)
    stat('value', t.f * t.u, tid, day)
    emit(now, 'coupon_issued', {'coupon', id, 'user', user, 'template', tid, 'claim', claim_id,
                                'uses', t.u, 'value', t.f * t.u, 'valid_from', vf,
                                'valid_to', vt, 'locator', loc})
    ids[#ids + 1] = id
  end
end
remember(OK, '', ids)
return answer(OK, '', ids)
