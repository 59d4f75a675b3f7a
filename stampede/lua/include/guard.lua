-- The scalper guard of a claim: block/allow lists, GCRA rates, distinct
-- accounts per device and network, risk rules, proof-of-work challenges.
-- Pasted after common and gcra by both claim scripts, claim_batch (sale
-- claims) and coupon_claim (coupon claims), which call it alike. Rates
-- first: if any refuses, none is charged (THROTTLED); else all are charged,
-- even if a later check refuses. Accounts are recorded and challenge nonces
-- spent only for a passed request.
--
-- The campaign's compiled config is meta field `th` (JSON, built by
-- stampede/domain/throttle.py as stampede/state/records.py GuardConfig),
-- decoded once per script run into a table named by GuardConfig's fields:
--   user, device, network, campaign   GCRA {interval_ms, burst}
--   accounts_per_device, accounts_per_network
--                {window_ms, challenge_above, reject_above}
--   risk         risk checks {signal, action = 'challenge'|'reject', above, below};
--                signals age (account age, s), lapses (holds let lapse or
--                cancelled here), recent (other campaigns claimed lately)
--   pow          challenge difficulty {base_bits, step_bits, max_bits}
--   recent_window_ms  set when a check reads recent
-- The lists hash maps "u:<user>", "d:<device>", "n:<network>" to 'a' or 'b'.
--
-- A request's context `g` is the claim argument's GuardArg (records.py):
--   device, network ('' none), age, recent (-1 unknown),
--   pow_bits, pow_exp (a verified solution's difficulty and expiry; -1 none),
--   and KEYS slots (0 none): k_user, k_device, k_network, k_acc_device,
--   k_acc_network, k_nonce; guard_context adds the claim's user.
-- The campaign's limiter and lists (GuardKeys) follow the script's fixed key
-- sets; the script names their first slot once, to load_guard_config: NKEYS + 1
-- (claim_batch), NCKEYS + 1 (coupon_claim).
--@include args

local g_limiter, g_lists = nil, nil  -- the campaign's limiter and lists keys

-- The campaign's config (nil when unguarded); `slot` is the KEYS index of its
-- guard keys.
local function load_guard_config(slot)
  local gk = guard_keys_at(slot)
  g_limiter, g_lists = gk.limiter, gk.lists
  local raw = redis.call('HGET', K.meta, 'th')
  if not raw or raw == '' then return nil end
  local cfg = guard_config_from(cjson.decode(raw))
  cfg.lists = redis.call('EXISTS', g_lists) == 1
  return cfg
end

-- The campaign-wide limiter is one key every claim of the batch passes:
-- its TAT is kept here and written once, at the end (guard_flush); so are
-- the run's refusals, counted by kind and recorded in one event.
local campaign_tat = nil
local g_refused, g_tally = {}, {}

-- A claim batch's rate-limiter TATs and lapse counts, read in one call each
-- (guard_prefetch) and kept as this run commits them; a key or user not read
-- ahead is read when it is met.
local g_tats, g_lapses = {}, nil

-- Read ahead what the batch's guard contexts will check: every GCRA key of
-- theirs (one MGET) and, when a risk rule reads lapses, each user's lapses.
local function guard_prefetch(cfg, contexts)
  local ks, seen = {}, {}
  for _, g in ipairs(contexts) do
    for _, slot in ipairs({g.k_user, g.k_device, g.k_network}) do
      if slot > 0 and not seen[KEYS[slot]] then
        seen[KEYS[slot]] = true
        ks[#ks + 1] = KEYS[slot]
      end
    end
  end
  for i = 1, #ks, 1000 do
    local last = math.min(i + 999, #ks)
    local v = redis.call('MGET', unpack(ks, i, last))
    for j = i, last do g_tats[ks[j]] = tonumber(v[j - i + 1] or '0') end
  end
  for _, rule in ipairs(cfg.risk) do
    if rule.signal == 'lapses' and #contexts > 0 then
      local fields = {}
      for i, g in ipairs(contexts) do fields[i] = g.user .. '|~lapsed' end
      local v = hmget_chunked(K.users, fields)
      g_lapses = {}
      for i, g in ipairs(contexts) do g_lapses[g.user] = tonumber(v[i] or '0') end
      break
    end
  end
end

-- The guard's context of a claim (its argument's decoded guard), with the
-- claim's user; nil if the claim came without one.
local function guard_context(user, g)
  if g then g.user = user end
  return g
end

-- Distinct accounts over a sliding window: exact, and bounded (a set never
-- grows past reject_above + 1 members: above that nothing is added).
local function accounts_seen(key, now, user, window)
  local n = redis.call('ZCARD', key)
  if n == 0 then return 1 end  -- a new device or network: one call
  n = n - redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if not redis.call('ZSCORE', key, user) then n = n + 1 end
  return n
end

local function risk_value(g, signal)
  if signal == 'age' then return g.age end
  if signal == 'recent' then return g.recent end
  if signal == 'lapses' then
    local n = g_lapses and g_lapses[g.user]
    return n or tonumber(redis.call('HGET', K.users, g.user .. '|~lapsed') or '0')
  end
  return -1
end

-- Returns OK, or {code, detail, value}: THROTTLED (scope, retry ms),
-- BLOCKED (why), CHALLENGE_REQUIRED (why, difficulty bits).
local function guard_verdict(cfg, g, now)
  local allowed = false
  if cfg.lists then
    local l = redis.call('HMGET', g_lists, 'u:' .. g.user, 'd:' .. g.device,
                         'n:' .. g.network)
    for i, why in ipairs({'user_blocked', 'device_blocked', 'network_blocked'}) do
      if l[i] == 'b' then return {BLOCKED, why, ''} end
      if l[i] == 'a' then allowed = true end
    end
  end
  -- Rates: an allowed user, device or network (a campus NAT) is exempt from
  -- the device and network limits, never from the user's or the campaign's.
  local pending, wait, scope = {}, 0, ''
  local function rate(lim, slot, name)
    if not lim or slot == 0 then return end
    local ok, retry, tat = gcra_check(KEYS[slot], now, lim.interval_ms, lim.burst,
                                      g_tats[KEYS[slot]])
    if not ok and retry > wait then wait, scope = retry, name end
    pending[#pending + 1] = {KEYS[slot], tat}
  end
  rate(cfg.user, g.k_user, 'user')
  if not allowed then
    rate(cfg.device, g.k_device, 'device')
    rate(cfg.network, g.k_network, 'network')
  end
  local c_tat = nil
  if cfg.campaign then  -- the campaign's limiter, from this batch's running TAT
    local step, burst = cfg.campaign.interval_ms, cfg.campaign.burst
    local tat = math.max(campaign_tat or tonumber(redis.call('GET', g_limiter) or '0'), now)
    local over = tat + step - now - step * burst
    if over > 0 and math.ceil(over) > wait then wait, scope = math.ceil(over), 'campaign' end
    c_tat = tat + step
  end
  if wait > 0 then return {THROTTLED, scope, wait} end
  -- Within its rates, the request is charged to them, whatever comes next:
  -- a bot refused by a later check still spends its network's budget.
  for _, p in ipairs(pending) do
    gcra_commit(p[1], now, p[2])
    g_tats[p[1]] = p[2]
  end
  if c_tat then campaign_tat = c_tat end
  local level, why = 0, ''
  local seen = {}
  if not allowed then
    for _, a in ipairs({{cfg.accounts_per_device, g.k_acc_device, 'accounts_per_device'},
                        {cfg.accounts_per_network, g.k_acc_network, 'accounts_per_network'}}) do
      local lim, slot = a[1], a[2]
      if lim and slot > 0 then
        local n = accounts_seen(KEYS[slot], now, g.user, lim.window_ms)
        if n > lim.reject_above then return {BLOCKED, a[3], ''} end
        if n > lim.challenge_above then level, why = level + 1, a[3] end
        seen[#seen + 1] = {KEYS[slot], lim.window_ms}
      end
    end
    for _, rule in ipairs(cfg.risk) do
      local v = risk_value(g, rule.signal)
      if v >= 0 and (rule.above == nil or v > rule.above)
          and (rule.below == nil or v < rule.below) then
        if rule.action == 'reject' then return {BLOCKED, 'risk_' .. rule.signal, ''} end
        level, why = level + 1, 'risk_' .. rule.signal
      end
    end
  end
  if level > 0 then
    local pw = cfg.pow
    local need = math.min(pw.max_bits, pw.base_bits + pw.step_bits * (level - 1))
    -- A verified solution of enough work, not expired by server time, and
    -- never used before (its nonce is kept until the challenge expires).
    local solved = g.pow_bits >= need and g.pow_exp > now and g.k_nonce > 0
      and redis.call('SET', KEYS[g.k_nonce], g.user, 'NX', 'PX', g.pow_exp - now)
    if not solved then return {CHALLENGE_REQUIRED, why, need} end
  end
  for _, s in ipairs(seen) do
    redis.call('ZADD', s[1], now, g.user)
    redis.call('PEXPIRE', s[1], s[2])
  end
  return OK
end

-- The guard's refusal codes, by the name they are counted under.
local GUARD_REFUSALS = {[THROTTLED] = 'throttled', [BLOCKED] = 'blocked',
                        [CHALLENGE_REQUIRED] = 'challenge_required'}

-- The guard's verdict on one claim (as guard_verdict), its refusal noted
-- for guard_flush: call it after the claim's replay checks, before its
-- first write.
local function guard(cfg, g, now)
  local v = guard_verdict(cfg, g, now)
  if v ~= OK then
    local name = GUARD_REFUSALS[v[1]]
    g_tally[name] = (g_tally[name] or 0) + 1
    g_refused[#g_refused + 1] = table.concat({g.user, v[1], v[2], v[3], g.device, g.network},
                                             ',')
  end
  return v
end

-- At the end of the script: the campaign limiter's TAT, the refusal counts
-- (K.counts) and one `requests_refused` event for the run's refusals
-- ("user,code,detail,value,device,network;...").
local function guard_flush(now)
  if campaign_tat then gcra_commit(g_limiter, now, campaign_tat) end
  for name, n in pairs(g_tally) do count(name, n) end
  if #g_refused > 0 then
    emit(now, 'requests_refused', {'n', #g_refused, 'refusals', table.concat(g_refused, ';')})
  end
end
