-- coupon_claim: claims of a coupon drop, a batch in one call; each final at once,
-- each issuing its coupons.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- KEYS[NCKEYS + 1..NCKEYS + 2] the guard's campaign-wide keys (limiter, lists)
-- KEYS[..]    per claim, the claimant's wallet (set of the coupon ids they ever
--             owned in this drop), when the claim carries one its idempotency
--             key, and the guard's limiter, accounts and challenge-nonce keys
--             (include/guard.lua)
-- ARGV[1]     how long to remember an idempotent answer (ms)
-- ARGV[2]     the batch's claims, one msgpack array of coupon_claim_arg
--             (stampede/state/records.py CouponClaimArg: claim_id, user, sku,
--             qty, wallet_slot, idem_slot, admission, identity, seed,
--             fingerprint, guard): slots are KEYS indexes (idem 0 if none);
--             admission the expiry (ms) of the admission token the engine
--             verified, -1 if none; identity the hashed real person ('' if
--             none); seed the random seed of the coupon ids and locators (a
--             claim may issue at most 100 coupons: qty x the SKU's pack); guard
--             the guard context as in claim_batch.lua (left out for a drop
--             unguarded at its last reply; such a claim of a guarded drop is
--             answered GUARD_CONTEXT_NEEDED, unchanged,
--             to be sent again with it)
-- Returns     per claim: code, reason, claim_id, at_ms, n, then n triples of
--             coupon_id, record, template spec (JSON); reason names a refusal
--             (a key of REFUSALS in stampede/outcomes.py, with its numbers after
--             ':'): stock, budget, per_day, 'per_user:<limit>:<held>',
--             'per_sku:<limit>:<held>', 'user_day:<limit>:<claimed>',
--             'person:<limit>:<claimed>', identity_required, no_campaign,
--             not_a_drop, no_sku, bad_qty, 'max_per_claim:<max>',
--             'max_coupons:<max>', 'not_open:<opens_ms>:<wait_ms>', '';
--             a guard refusal gives its detail as the reason and its value in place
--             of the claim_id: THROTTLED the limit's scope and the exact retry-after
--             in ms, BLOCKED why, CHALLENGE_REQUIRED why and the difficulty in bits.
--             Then one last element: 0 if the drop is unguarded, else 1, or the
--             window (ms) of its recent_campaigns signal when a rule reads it.
--
-- Each claim is checked fully before its first write, in order: idempotency,
-- the scalper guard (include/guard.lua: a refused claim writes only its limiter
-- state; the batch's refusals are recorded in one `requests_refused` event), the
-- campaign's gates (state, schedule, fence, waiting-room admission), SKU and
-- quantity, per-user limits (held + sold, campaign and SKU, plus received gifts
-- that count), per-user-per-day, per-person, stock, total per day, budget. A
-- gift pack issues all its coupons or none. A claim id that exists already means
-- a retried call (lost reply): its first answer is given again. Events:
-- claim_held and claim_confirmed (the stock's story, as in a sale), then
-- coupon_issued for each coupon.
--@include common
--@include coupons
--@include gcra
--@include guard

local idem_ttl = tonumber(ARGV[1])
local now = now_ms()
release_due_waves(now)
local gate, gate_detail = sale_gate(now, true)
local cid = redis.call('HGET', K.meta, 'id')
local lim = redis.call('HMGET', K.meta, 'per_user', 'max_qty', 'wr_on', 'cp_user_day',
                       'cp_person', 'cp_per_day', 'cp_budget')
local per_user, max_qty, waiting_room = tonumber(lim[1] or '-1'), tonumber(lim[2] or '1'),
                                        lim[3] == '1'
local user_day, per_person = tonumber(lim[4] or '-1'), tonumber(lim[5] or '-1')
local per_day, budget = tonumber(lim[6] or '-1'), tonumber(lim[7] or '-1')
local day = math.floor(now / DAY_MS)
local day_field = tostring(day)
local guard_cfg = load_guard_config(NCKEYS + 1)
local out = {}
local specs, tpls = {}, {}
local MAX_COUPONS = 100  -- most coupons one claim may issue (bounds the script's run time)
-- Stats are tallied here and written once at the end; the budget reads the
-- running total (the script is atomic: nobody sees the tally and Redis differ).
local tally = {}
local value_total = tonumber(redis.call('HGET', C.cstats, '*|value') or '0')
local function tstat(name, by, tpl)
  for _, f in ipairs({'*|' .. name, 't:' .. tpl .. '|' .. name, 'd:' .. day .. '|' .. name}) do
    tally[f] = (tally[f] or 0) + by
  end
end

local function spec_of(tid)
  if specs[tid] == nil then
    specs[tid] = redis.call('HGET', K.meta, 'cp_spec:' .. tid) or false
    tpls[tid] = template(tid) or false
  end
  return specs[tid]
end

local function answer(code, reason, claim_id, at, ids)
  out[#out + 1] = code
  out[#out + 1] = reason or ''
  out[#out + 1] = (code == OK or GUARD_REFUSALS[code]) and claim_id or ''
  out[#out + 1] = at or now
  out[#out + 1] = ids and #ids or 0
  for _, id in ipairs(ids or {}) do
    local raw = redis.call('HGET', C.cpn, id) or ''
    out[#out + 1] = id
    out[#out + 1] = raw
    out[#out + 1] = raw ~= '' and spec_of(parse_coupon(raw).tpl) or ''
  end
end

local function claim_one(claim_id, user, sku, qty, wallet, idem, admission, identity, seed,
                         fingerprint, g)
  local function coupon_id(i)
    return cid .. '.' .. string.sub(redis.sha1hex(seed .. '#' .. i), 1, 20)
  end
  local function remember(code, reason, ids)
    if idem then
      redis.call('SET', idem, format_coupon_answer({fingerprint = fingerprint, code = code,
        reason = reason or '', claim_id = claim_id, at = now, coupons = ids or {}}), 'PX',
        idem_ttl)
    end
  end
  local function refuse(code, reason)
    remember(code, reason)
    return answer(code, reason)
  end

  if idem then
    local prior = redis.call('GET', idem)
    if prior then
      local p = parse_coupon_answer(prior)
      if p.fingerprint ~= fingerprint then return answer(IDEMPOTENCY_MISMATCH) end
      return answer(p.code, p.reason, p.claim_id, p.at, p.coupons)
    end
  end
  local sku_cfg = redis.call('HGET', K.meta, 'cp_sku:' .. sku)
  local cfg = sku_cfg and cjson.decode(sku_cfg)
  local existing = redis.call('HGET', K.claims, claim_id)
  if existing then  -- a retried call: answer again
    local c = parse_claim(existing)
    local ids = {}
    for i = 1, c.qty * #cfg.t do ids[i] = coupon_id(i) end
    return answer(OK, '', claim_id, c.created, ids)
  end
  if guard_cfg and not g then return answer(GUARD_CONTEXT_NEEDED) end  -- guarded since
  if guard_cfg then  -- not remembered: a refused claim may pass later
    local verdict = guard(guard_cfg, g, now)
    if verdict ~= OK then return answer(verdict[1], verdict[2], verdict[3]) end
  end
  -- Refusals by state are "try later" answers, not remembered.
  if gate ~= OK then return answer(gate, gate_detail) end
  if waiting_room and not admitted(now, user, admission) then
    return answer(ADMISSION_REQUIRED)
  end
  local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.lim', sku .. '.price')
  if not s[1] or not cfg then return answer(NOT_FOUND, 'no_sku') end
  for _, tid in ipairs(cfg.t) do
    if not spec_of(tid) or not tpls[tid] then return answer(NOT_FOUND, 'no_sku') end
  end
  if qty < 1 then return answer(INVALID, 'bad_qty') end
  if qty > max_qty then return answer(INVALID, 'max_per_claim:' .. max_qty) end
  if qty * #cfg.t > MAX_COUPONS then return answer(INVALID, 'max_coupons:' .. MAX_COUPONS) end
  local avail, sku_lim = tonumber(s[1]), tonumber(s[2])
  local u = redis.call('HMGET', K.users, user, user .. '|' .. sku)
  local gifts = tonumber(redis.call('HGET', C.cusers, 'g|' .. user) or '0')
  local total, per_sku = tonumber(u[1] or '0') + gifts, tonumber(u[2] or '0')
  if per_user >= 0 and total + qty > per_user then
    return refuse(LIMIT_EXCEEDED, 'per_user:' .. per_user .. ':' .. total)
  end
  if sku_lim >= 0 and per_sku + qty > sku_lim then
    return refuse(LIMIT_EXCEEDED, 'per_sku:' .. sku_lim .. ':' .. per_sku)
  end
  local user_day_field = day .. '|u|' .. user
  local d = redis.call('HMGET', C.cday, day_field, user_day_field)
  if user_day >= 0 and tonumber(d[2] or '0') + qty > user_day then
    return refuse(LIMIT_EXCEEDED, 'user_day:' .. user_day .. ':' .. tonumber(d[2] or '0'))
  end
  if per_person >= 0 then
    if identity == '' then return answer(LIMIT_EXCEEDED, 'identity_required') end
    local claimed = tonumber(redis.call('HGET', C.cusers, 'p|' .. identity) or '0')
    if claimed + qty > per_person then
      return refuse(LIMIT_EXCEEDED, 'person:' .. per_person .. ':' .. claimed)
    end
  end
  if avail < qty then return refuse(SOLD_OUT, 'stock') end
  if per_day >= 0 and tonumber(d[1] or '0') + qty > per_day then
    return refuse(SOLD_OUT, 'per_day')
  end
  if budget >= 0 and value_total + cfg.v * qty > budget then
    return refuse(SOLD_OUT, 'budget')
  end

  -- All checks passed: write.
  redis.call('HINCRBY', K.stock, sku .. '.a', -qty)
  redis.call('HINCRBY', K.stock, sku .. '.s', qty)
  redis.call('HINCRBY', K.users, user, qty)
  redis.call('HINCRBY', K.users, user .. '|' .. sku, qty)
  redis.call('HSET', K.claims, claim_id, format_claim({status = 'confirmed', user = user,
    sku = sku, qty = qty, deadline = now, price = s[3], created = now}))
  redis.call('HINCRBY', C.cday, day_field, qty)
  redis.call('HINCRBY', C.cday, user_day_field, qty)
  if per_person >= 0 then redis.call('HINCRBY', C.cusers, 'p|' .. identity, qty) end
  if waiting_room then redis.call('ZREM', K.admitted, user) end
  count('coupon_claims')
  local ev = {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty, 'price', s[3],
              'deadline', now}
  if idem then
    ev[#ev + 1] = 'idem'; ev[#ev + 1] = idem
    ev[#ev + 1] = 'fp'; ev[#ev + 1] = fingerprint
  end
  if identity ~= '' then ev[#ev + 1] = 'identity'; ev[#ev + 1] = identity end
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
      redis.call('ZADD', C.cexp, vt, id)
      redis.call('SADD', wallet, id)
      tstat('issued', 1, tid)
      tstat('uses', t.u, tid)
      tstat('value', t.f * t.u, tid)
      value_total = value_total + t.f * t.u
      emit(now, 'coupon_issued', {'coupon', id, 'user', user, 'template', tid,
                                  'claim', claim_id, 'uses', t.u, 'value', t.f * t.u,
                                  'valid_from', vf, 'valid_to', vt, 'locator', loc})
      ids[#ids + 1] = id
    end
  end
  remember(OK, '', ids)
  return answer(OK, '', claim_id, now, ids)
end

for _, a in ipairs(cmsgpack.unpack(ARGV[2])) do
  local c = coupon_claim_arg_from(a)
  claim_one(c.claim_id, c.user, c.sku, c.qty, KEYS[c.wallet_slot],
            c.idem_slot > 0 and KEYS[c.idem_slot] or nil, c.admission, c.identity, c.seed,
            c.fingerprint, guard_cfg and guard_context(c.user, c.guard))
end
for f, n in pairs(tally) do redis.call('HINCRBY', C.cstats, f, n) end
guard_flush(now)  -- the campaign limiter, refusal counts, one requests_refused event
out[#out + 1] = guard_cfg and (guard_cfg.recent_window_ms or 1) or 0
return out
