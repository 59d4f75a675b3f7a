-- The scalper guard of a claim: block/allow lists, GCRA rates, distinct
-- accounts per device and network, risk rules, proof-of-work challenges.
-- Pasted after common and gcra. Rates first: if any refuses, none is
-- charged (THROTTLED); else all are charged, even if a later check refuses.
-- Accounts are recorded and challenge nonces spent only for a passed request.
--
-- The campaign's compiled config is meta field `th` (JSON, built by
-- engine/throttle.py), decoded once per script run:
--   u, d, n, c   GCRA {interval_ms, burst} per user, device, network, campaign
--   ad, an       accounts per device / network: {window_ms, challenge_above, reject_above}
--   r            risk rules: {s = signal, gt = x, lt = y, a = 'challenge'|'reject'};
--                signals age (account age, s), lapses (holds let lapse or
--                cancelled here), recent (other campaigns claimed lately)
--   pw           challenge difficulty {base_bits, step_bits, max_bits}
-- The lists hash maps "u:<user>", "d:<device>", "n:<network>" to 'a' or 'b'.
--
-- A request's context `g` (parsed from its packed argument by the caller):
--   user, device, network ('' none), age, recent (-1 unknown),
--   pow_bits, pow_exp (a verified solution's difficulty and expiry; -1 none),
--   and KEYS slots (0 none): k_user, k_device, k_network, k_acc_device,
--   k_acc_network, k_nonce; the campaign's limiter and lists are KEYS[NKEYS+1..2].

local function guard_config()
  local raw = redis.call('HGET', K.meta, 'th')
  if not raw or raw == '' then return nil end
  local cfg = cjson.decode(raw)
  cfg.lists = redis.call('EXISTS', KEYS[NKEYS + 2]) == 1
  return cfg
end

-- The campaign-wide limiter is one key every claim of the batch passes:
-- its TAT is kept here and written once, at the end (guard_flush).
local campaign_tat = nil
local function guard_flush(now)
  if campaign_tat then gcra_commit(KEYS[NKEYS + 1], now, campaign_tat) end
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
    return tonumber(redis.call('HGET', K.users, g.user .. '|~lapsed') or '0')
  end
  return -1
end

-- Returns OK, or {code, detail, value}: THROTTLED (scope, retry ms),
-- BLOCKED (why), CHALLENGE_REQUIRED (why, difficulty bits).
local function guard(cfg, g, now)
  local allowed = false
  if cfg.lists then
    local l = redis.call('HMGET', KEYS[NKEYS + 2], 'u:' .. g.user, 'd:' .. g.device,
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
    local ok, retry, tat = gcra_check(KEYS[slot], now, lim[1], lim[2])
    if not ok and retry > wait then wait, scope = retry, name end
    pending[#pending + 1] = {KEYS[slot], tat}
  end
  rate(cfg.u, g.k_user, 'user')
  if not allowed then
    rate(cfg.d, g.k_device, 'device')
    rate(cfg.n, g.k_network, 'network')
  end
  local c_tat = nil
  if cfg.c then  -- the campaign's limiter, from this batch's running TAT
    local lim = cfg.c
    local tat = math.max(campaign_tat or tonumber(redis.call('GET', KEYS[NKEYS + 1]) or '0'), now)
    local over = tat + lim[1] - now - lim[1] * lim[2]
    if over > 0 and math.ceil(over) > wait then wait, scope = math.ceil(over), 'campaign' end
    c_tat = tat + lim[1]
  end
  if wait > 0 then return {THROTTLED, scope, wait} end
  -- Within its rates, the request is charged to them, whatever comes next:
  -- a bot refused by a later check still spends its network's budget.
  for _, p in ipairs(pending) do gcra_commit(p[1], now, p[2]) end
  if c_tat then campaign_tat = c_tat end
  local level, why = 0, ''
  local seen = {}
  if not allowed then
    for _, a in ipairs({{cfg.ad, g.k_acc_device, 'accounts_per_device'},
                        {cfg.an, g.k_acc_network, 'accounts_per_network'}}) do
      local lim, slot = a[1], a[2]
      if lim and slot > 0 then
        local n = accounts_seen(KEYS[slot], now, g.user, lim[1])
        if n > lim[3] then return {BLOCKED, a[3], ''} end
        if n > lim[2] then level, why = level + 1, a[3] end
        seen[#seen + 1] = {KEYS[slot], lim[1]}
      end
    end
    for _, rule in ipairs(cfg.r or {}) do
      local v = risk_value(g, rule.s)
      if v >= 0 and (rule.gt == nil or v > rule.gt) and (rule.lt == nil or v < rule.lt) then
        if rule.a == 'reject' then return {BLOCKED, 'risk_' .. rule.s, ''} end
        level, why = level + 1, 'risk_' .. rule.s
      end
    end
  end
  if level > 0 then
    local pw = cfg.pw
    local need = math.min(pw[3], pw[1] + pw[2] * (level - 1))
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
