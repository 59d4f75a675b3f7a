-- coupon_claim: claims of a coupon drop, a batch in one call; each final at once,
-- each issuing its coupons.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- KEYS[NCKEYS + 1..NCKEYS + NGKEYS] the guard's campaign-wide keys (limiter,
--             lists, state)
-- KEYS[..]    per claim, the claimant's wallet (set of the coupon ids they ever
--             owned in this drop), when the claim carries one its idempotency
--             key, and the guard's challenge-nonce keys (include/guard.lua)
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
--             to be sent again with it); code the promo or referral code the
--             claim was made with (CodeArg: the code, the referrer the engine
--             read, KEYS slots of the referrer's wallet and of the claimant's
--             wrong-code limiter), the SKU then comes from the code; points
--             the points debit that paid a points-priced SKU (PointsArg: debit
--             id, points), whose claim_id the engine derives from the debit
--             A paid voucher's SKU (meta cp_paid:<sku>) is not issued: the claim is
--             held (stock a -> h, deadline now + hold_ttl_ms, its face value kept
--             from the budget) and answered OK with reason 'held' and the deadline
--             in place of at_ms; coupon_pay.lua issues on payment, the sweeper
--             lapses it (docs/paid-vouchers.md). Event voucher_held after claim_held.
-- ARGV[3]     '1': a shard of a sharded drop answers SHARD_DRY (internal, not
--             remembered) for a claim its own stock cannot serve, so the engine
--             can borrow units from the other shards first (its reason: the
--             SKU, which a code claim learns here); absent: SOLD_OUT
-- ARGV[4]     '1': the claims were sent before and passed the guard then (sent
--             again after a borrow): the guard is skipped, so one claim is
--             charged to the limiters once
-- Returns     per claim: code, reason (on OK: '' or, for a code claim, the SKU
--             it issued), claim_id, at_ms, n, then n triples of
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
local dry_is_internal = ARGV[3] == '1'  -- sharded drops: borrow before refusing
local guard_passed = ARGV[4] == '1'  -- sent again after a borrow: charged once already
local now = now_ms()
release_due_waves(now)
local gate, gate_detail = sale_gate(now, true)
local cid = redis.call('HGET', K.meta, 'id')
local lim = redis.call('HMGET', K.meta, 'per_user', 'max_qty', 'wr_on', 'cp_user_day',
                       'cp_person', 'cp_per_day', 'cp_budget', 'cp_paids', 'hold_ttl_ms')
local per_user, max_qty, waiting_room = tonumber(lim[1] or '-1'), tonumber(lim[2] or '1'),
                                        room_mode(lim[3])
local user_day, per_person = tonumber(lim[4] or '-1'), tonumber(lim[5] or '-1')
local per_day, budget = tonumber(lim[6] or '-1'), tonumber(lim[7] or '-1')
local day = math.floor(now / DAY_MS)
local day_field = tostring(day)
local guard_cfg = load_guard_config(NCKEYS + 1)
local guard_run = guard_cfg and not guard_passed  -- the config is read either way (flag)
local out = {}
local specs, tpls = {}, {}
local MAX_COUPONS = 100  -- most coupons one claim may issue (bounds the script's run time)
-- Stats are tallied here and written once at the end; the budget reads the
-- running total (the script is atomic: nobody sees the tally and Redis differ).
local tally = {}
local value_total = tonumber(redis.call('HGET', C.cstats, '*|value') or '0')
-- Paid vouchers: the face value of their holds counts against the budget too.
local hold_ttl = tonumber(lim[9] or '0')
for _, psku in ipairs(lim[8] and cjson.decode(lim[8]) or {}) do
  local held = tonumber(redis.call('HGET', K.stock, psku .. '.h') or '0')
  local pcfg = held > 0 and redis.call('HGET', K.meta, 'cp_sku:' .. psku)
  if pcfg then value_total = value_total + held * cjson.decode(pcfg).v end
end
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

local function coupon_id_of(seed, i)
  return coupon_id(cid, seed, i)
end

-- Write one claim that passed every check: the stock, the user's counters, the
-- claim (confirmed at once), its events and its coupons. `who` the claimant's
-- extras: identity, idem and fingerprint ('' / nil when none).
local function issue(claim_id, user, sku, qty, cfg, price, wallet, seed, who)
  redis.call('HINCRBY', K.stock, sku .. '.a', -qty)
  redis.call('HINCRBY', K.stock, sku .. '.s', qty)
  units_add(user, sku, qty)
  redis.call('HSET', K.claims, claim_id, format_claim({status = 'confirmed', user = user,
    sku = sku, qty = qty, deadline = now, price = price, created = now}))
  redis.call('HINCRBY', C.cday, day_field, qty)
  redis.call('HINCRBY', C.cday, day .. '|u|' .. user, qty)
  if who.per_person then redis.call('HINCRBY', C.cusers, 'p|' .. who.identity, qty) end
  count('coupon_claims')
  local ev = {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty, 'price', price,
              'deadline', now}
  if who.idem then
    ev[#ev + 1] = 'idem'; ev[#ev + 1] = who.idem
    ev[#ev + 1] = 'fp'; ev[#ev + 1] = who.fingerprint
  end
  if who.identity ~= '' then ev[#ev + 1] = 'identity'; ev[#ev + 1] = who.identity end
  emit(now, 'claim_held', ev)
  emit(now, 'claim_confirmed', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty,
                                'price', price})
  local ids = {}
  for _ = 1, qty do
    for _, tid in ipairs(cfg.t) do
      local t = tpls[tid]
      local id = issue_coupon(now, cid, seed, #ids + 1, user, wallet, claim_id, tid, t)
      tstat('issued', 1, tid)
      tstat('uses', t.u, tid)
      tstat('value', t.f * t.u, tid)
      value_total = value_total + t.f * t.u
      ids[#ids + 1] = id
    end
  end
  return ids
end

-- Hold a paid voucher's claim that passed every check: the stock is held until
-- the payment is confirmed (coupon_pay.lua) or the deadline lapses (sweep.lua).
local function hold(claim_id, user, sku, qty, cfg, price, who)
  local deadline = now + hold_ttl
  redis.call('HINCRBY', K.stock, sku .. '.a', -qty)
  redis.call('HINCRBY', K.stock, sku .. '.h', qty)
  units_add(user, sku, qty)
  redis.call('HSET', K.claims, claim_id, format_claim({status = 'held', user = user,
    sku = sku, qty = qty, deadline = deadline, price = price, created = now}))
  redis.call('ZADD', K.deadlines, deadline, claim_id)
  redis.call('HSET', C.cusers, 'pv|' .. claim_id, format_paid({status = 'held', payment = '',
    refunded = 0}))
  redis.call('HINCRBY', C.cday, day_field, qty)
  redis.call('HINCRBY', C.cday, day .. '|u|' .. user, qty)
  if who.per_person then redis.call('HINCRBY', C.cusers, 'p|' .. who.identity, qty) end
  value_total = value_total + cfg.v * qty
  count('voucher_holds')
  local ev = {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty, 'price', price,
              'deadline', deadline}
  if who.idem then
    ev[#ev + 1] = 'idem'; ev[#ev + 1] = who.idem
    ev[#ev + 1] = 'fp'; ev[#ev + 1] = who.fingerprint
  end
  if who.identity ~= '' then ev[#ev + 1] = 'identity'; ev[#ev + 1] = who.identity end
  emit(now, 'claim_held', ev)
  emit(now, 'voucher_held', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty,
                             'amount', price * qty, 'value', cfg.v * qty,
                             'deadline', deadline})
  return deadline
end

local function sku_config(sku)
  local raw = sku ~= '' and redis.call('HGET', K.meta, 'cp_sku:' .. sku)
  return raw and cjson.decode(raw) or nil
end

-- The code a claim was made with: {sku, promo | referral} or nil and the refusal
-- (code, reason, value). Only a wrong code writes (its limiter).
local code_rate, promos, sku_flags = nil, {}, {}  -- read once per batch
local function resolve_code(code_arg)
  if not code_rate then
    local rate = redis.call('HGET', K.meta, 'cp_badcode') or '360000:10'
    local sep = string.find(rate, ':', 1, true)
    code_rate = {tonumber(string.sub(rate, 1, sep - 1)), tonumber(string.sub(rate, sep + 1))}
  end
  local limiter = KEYS[code_arg.limiter]
  local allowed, retry, new_tat = gcra_check(limiter, now, code_rate[1], code_rate[2])
  if not allowed then return nil, {THROTTLED, 'code', tostring(retry)} end
  local code = code_arg.code
  if promos[code] == nil then
    local raw = redis.call('HGET', K.meta, 'cp_promo:' .. code)
    promos[code] = raw and cjson.decode(raw) or false
  end
  local p = promos[code]
  if p then return {sku = p.s, promo = {code = code, per_user = p.u}} end
  local ref_cfg = redis.call('HGET', K.meta, 'cp_ref')
  local owner = ref_cfg and redis.call('HGET', C.cusers, 'rc|' .. code)
  if owner then
    local sep2 = string.find(owner, '|', 1, true)
    local referrer = string.sub(owner, 1, sep2 - 1)
    if referrer == code_arg.referrer and code_arg.referrer_wallet > 0 then
      local r = cjson.decode(ref_cfg)
      return {sku = r.s, referral = {code = code, referrer = referrer,
              identity = string.sub(owner, sep2 + 1), sku = r.r, max = r.m,
              wallet = KEYS[code_arg.referrer_wallet]}}
    end
  end
  gcra_commit(limiter, now, new_tat)
  return nil, {NOT_FOUND, 'no_code'}
end

local function claim_one(claim_id, user, sku, qty, wallet, idem, admission, identity, seed,
                         fingerprint, g, code_arg, paid)
  local function coupon_id(i)
    return coupon_id_of(seed, i)
  end
  local function remember(code, reason, ids, at)
    if idem then
      redis.call('SET', idem, format_coupon_answer({fingerprint = fingerprint, code = code,
        reason = reason or '', claim_id = claim_id, at = at or now, coupons = ids or {}}), 'PX',
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
  local existing = redis.call('HGET', K.claims, claim_id)
  if existing then  -- a retried call: answer again
    local c = parse_claim(existing)
    if c.status == 'held' then return answer(OK, 'held', claim_id, c.deadline, {}) end
    local ids = {}
    for i = 1, c.qty * #sku_config(c.sku).t do ids[i] = coupon_id(i) end
    if #ids > 0 and redis.call('HEXISTS', C.cpn, ids[1]) == 0 then
      -- Another call's seed (a points exchange's claim id is its debit's): find its coupons.
      ids = {}
      for _, id in ipairs(redis.call('SMEMBERS', wallet)) do
        local raw = redis.call('HGET', C.cpn, id)
        if raw and parse_coupon(raw).claim == claim_id then ids[#ids + 1] = id end
      end
      table.sort(ids)
    end
    return answer(OK, code_arg and c.sku or '', claim_id, c.created, ids)
  end
  if guard_run and not g then return answer(GUARD_CONTEXT_NEEDED) end  -- guarded since
  if guard_run then  -- not remembered: a refused claim may pass later
    local verdict = guard(guard_cfg, g, now)
    if verdict ~= OK then return answer(verdict[1], verdict[2], verdict[3]) end
  end
  -- Refusals by state are "try later" answers, not remembered.
  if gate ~= OK then return answer(gate, gate_detail) end
  if waiting_room and not admitted(now, user, admission, waiting_room) then
    return answer(ADMISSION_REQUIRED)
  end
  local coded = nil
  if code_arg then
    local why
    coded, why = resolve_code(code_arg)
    if not coded then return answer(why[1], why[2], why[3]) end
    sku = coded.sku
  end
  local cfg = sku_config(sku)
  local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.lim', sku .. '.price')
  if not s[1] or not cfg then return answer(NOT_FOUND, 'no_sku') end
  for _, tid in ipairs(cfg.t) do
    if not spec_of(tid) or not tpls[tid] then return answer(NOT_FOUND, 'no_sku') end
  end
  local flags = sku_flags[sku]
  if not flags then
    flags = redis.call('HMGET', K.meta, 'cp_coded:' .. sku, 'cp_points:' .. sku,
                       'cp_paid:' .. sku)
    sku_flags[sku] = flags
  end
  if not coded and flags[1] then return answer(NOT_FOUND, 'code_required') end
  if qty < 1 then return answer(INVALID, 'bad_qty') end
  -- A points-priced SKU only with its debit, for exactly its price; points only for one.
  local price_pts = tonumber(flags[2] or '-1')
  if (price_pts >= 0) ~= (paid ~= nil) or (paid and paid.points ~= price_pts * qty) then
    return answer(CONFLICT, 'points_price:' .. price_pts)  -- the engine pays, then claims
  end
  if qty > max_qty then return answer(INVALID, 'max_per_claim:' .. max_qty) end
  if qty * #cfg.t > MAX_COUPONS then return answer(INVALID, 'max_coupons:' .. MAX_COUPONS) end
  local avail, sku_lim = tonumber(s[1]), tonumber(s[2])
  local total, by = units_of(user)
  local gifts = tonumber(redis.call('HGET', C.cusers, 'g|' .. user) or '0')
  local per_sku = by[sku] or 0
  total = total + gifts
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
  local promo, ref = coded and coded.promo, coded and coded.referral
  local promo_field = promo and 'c|' .. promo.code .. '|' .. user
  if promo then
    local used = tonumber(redis.call('HGET', C.cusers, promo_field) or '0')
    if used + qty > promo.per_user then
      return refuse(LIMIT_EXCEEDED, 'code_per_user:' .. promo.per_user .. ':' .. used)
    end
  end
  -- A referral's reward takes a unit (and face value) of its own SKU.
  local extra, extra_value, ref_cfg, ref_price = 0, 0, nil, nil
  if ref then
    if qty ~= 1 then return answer(INVALID, 'max_per_claim:1') end
    if identity == '' then return answer(LIMIT_EXCEEDED, 'identity_required') end
    if user == ref.referrer or identity == ref.identity then
      return refuse(CONFLICT, 'own_referral')
    end
    local seen = redis.call('HMGET', C.cusers, 'rf|' .. user, 'ri|' .. identity,
                            'rn|' .. ref.referrer)
    if seen[1] or seen[2] then return refuse(LIMIT_EXCEEDED, 'referral_used') end
    if ref.max >= 0 and tonumber(seen[3] or '0') >= ref.max then
      return refuse(LIMIT_EXCEEDED, 'referral_limit:' .. ref.max)
    end
    -- The reward is a claim of the referrer's: their limits hold for it too.
    local r_held, r_by = units_of(ref.referrer)
    local r_gifts = tonumber(redis.call('HGET', C.cusers, 'g|' .. ref.referrer) or '0')
    local r_total = r_held + r_gifts + (user == ref.referrer and qty or 0)
    local r_lim = tonumber(redis.call('HGET', K.stock, ref.sku .. '.lim') or '-1')
    if (per_user >= 0 and r_total + 1 > per_user)
        or (r_lim >= 0 and (r_by[ref.sku] or 0) + 1 > r_lim) then
      return refuse(LIMIT_EXCEEDED, 'referrer_limit')
    end
    ref_cfg = sku_config(ref.sku)
    local rs = redis.call('HMGET', K.stock, ref.sku .. '.a', ref.sku .. '.price')
    if not ref_cfg or not rs[1] then return answer(NOT_FOUND, 'no_sku') end
    for _, tid in ipairs(ref_cfg.t) do
      if not spec_of(tid) or not tpls[tid] then return answer(NOT_FOUND, 'no_sku') end
    end
    local need = 1 + (ref.sku == sku and qty or 0)
    if tonumber(rs[1]) < need then return refuse(SOLD_OUT, 'stock') end
    extra, extra_value, ref_price = 1, ref_cfg.v, rs[2]
  end
  if avail < qty then
    if dry_is_internal then return answer(SHARD_DRY, sku) end  -- borrowed, sent again
    return refuse(SOLD_OUT, 'stock')
  end
  if per_day >= 0 and tonumber(d[1] or '0') + qty + extra > per_day then
    return refuse(SOLD_OUT, 'per_day')
  end
  if budget >= 0 and value_total + cfg.v * qty + extra_value > budget then
    return refuse(SOLD_OUT, 'budget')
  end

  -- All checks passed: write.
  if waiting_room then use_turn(now, user, waiting_room) end
  if flags[3] then  -- a paid voucher: held until paid
    local deadline = hold(claim_id, user, sku, qty, cfg, tonumber(s[3]),
                          {identity = identity, per_person = per_person >= 0, idem = idem,
                           fingerprint = fingerprint})
    remember(OK, 'held', {}, deadline)
    return answer(OK, 'held', claim_id, deadline, {})
  end
  local ids = issue(claim_id, user, sku, qty, cfg, s[3], wallet, seed,
                    {identity = identity, per_person = per_person >= 0, idem = idem,
                     fingerprint = fingerprint})
  if paid then
    emit(now, 'points_exchanged', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty,
                                   'debit', paid.debit, 'points', paid.points})
  end
  if promo then
    redis.call('HINCRBY', C.cusers, promo_field, qty)
    emit(now, 'code_claimed', {'claim', claim_id, 'user', user, 'code', promo.code,
                               'kind', 'promo', 'qty', qty})
  elseif ref then
    local reward = cid .. '.' .. string.sub(redis.sha1hex(claim_id .. '|reward'), 1, 20)
    issue(reward, ref.referrer, ref.sku, 1, ref_cfg, ref_price, ref.wallet, seed .. 'r',
          {identity = ''})
    redis.call('HSET', C.cusers, 'rf|' .. user, ref.referrer, 'ri|' .. identity, user)
    redis.call('HINCRBY', C.cusers, 'rn|' .. ref.referrer, 1)
    emit(now, 'code_claimed', {'claim', claim_id, 'user', user, 'code', ref.code,
                               'kind', 'referral', 'qty', qty, 'referrer', ref.referrer,
                               'reward_claim', reward, 'identity', identity})
  end
  local issued = coded and sku or ''  -- a code claim's answer names the SKU it issued
  remember(OK, issued, ids)
  return answer(OK, issued, claim_id, now, ids)
end

local batch = {}
for i, a in ipairs(cmsgpack.unpack(ARGV[2])) do batch[i] = coupon_claim_arg_from(a) end
if guard_run then guard_prefetch_batch(guard_cfg, batch) end  -- the batch's guard state in one read
for _, c in ipairs(batch) do
  claim_one(c.claim_id, c.user, c.sku, c.qty, KEYS[c.wallet_slot],
            c.idem_slot > 0 and KEYS[c.idem_slot] or nil, c.admission, c.identity, c.seed,
            c.fingerprint, guard_run and guard_context(c.user, c.guard),
            c.code, c.points)
end
for f, n in pairs(tally) do redis.call('HINCRBY', C.cstats, f, n) end
guard_flush(now)  -- the campaign limiter, refusal counts, one requests_refused event
out[#out + 1] = guard_cfg and (guard_cfg.recent_window_ms or 1) or 0
return out
