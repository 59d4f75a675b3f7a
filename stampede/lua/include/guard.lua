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
--   k_nonce (KEYS slot of the solution's nonce key, 0 none); guard_context
--   adds the claim's user and the names of its state fields (fu, fd, fn).
-- The campaign's limiter, lists and state (GuardKeys) follow the script's
-- fixed key sets; the script names their first slot once, to
-- load_guard_config: NKEYS + 1 (claim_batch, claim_bundle), NCKEYS + 1
-- (coupon_claim).
--
-- The state hash holds everything the guard remembers per user, device and
-- network, one field each, every field with its own expiry (hash field
-- expiration), so nothing outlives its use:
--   "u:<user>"   the user's GCRA TAT (ms); expires around the TAT, after
--                which it would read as "fresh" anyway
--   "d:<device>", "n:<network>"  "<TAT>|<accounts>": the device's (network's)
--                TAT ('' none), and the accounts seen there lately,
--                "<ms> <user>," each (accounts_seen); expires after the TAT
--                and a window after it was last written with accounts
-- A run reads the fields of its whole batch in one HMGET
-- (guard_prefetch_batch), keeps them decoded as its claims change them, and
-- writes the changed ones at the end in one HSETEX per expiry (guard_flush),
-- as include/holds.lua does for holds. Proof-of-work nonces keep a key each
-- (rare: one per solved challenge), checked and set at once with SET NX.

--@include args

local g_limiter, g_lists, g_state = nil, nil, nil  -- the campaign's GuardKeys
local g_cfg = nil  -- its config, for guard_flush
-- Whether a context names its device's (network's) state field: some check reads it.
local g_reads_device, g_reads_network = false, false

-- The campaign's config (nil when unguarded), decoded once per run; `slot` is
-- the KEYS index of its guard keys.
local function load_guard_config(slot)
  local gk = guard_keys_at(slot)
  g_limiter, g_lists, g_state = gk.limiter, gk.lists, gk.state
  local raw = redis.call('HGET', K.meta, 'th')
  if not raw or raw == '' then return nil end
  local cfg = guard_config_from(cjson.decode(raw))
  cfg.lists = redis.call('EXISTS', g_lists) == 1
  g_cfg = cfg
  g_reads_device = (cfg.device or cfg.accounts_per_device) and true or false
  g_reads_network = (cfg.network or cfg.accounts_per_network) and true or false
  return cfg
end

-- The campaign-wide limiter is one key every claim of the batch passes:
-- its TAT is kept here and written once, at the end (guard_flush); so are
-- the run's refusals, counted by kind and recorded in one event.
local campaign_tat = nil
local g_refused, g_tally = {}, {}

-- The state fields as this run has read and changed them, decoded: a user's
-- TAT (0 none), a device's or network's {tat, list, window} (window: of its
-- accounts limit, 0 none); g_dirty names those changed. The lists' marks
-- (false: none), and the users' lapse counts when a rule reads them.
local g_fields, g_dirty, g_marks, g_lapses = {}, {}, {}, nil

-- Numbers as text, each converted once per run: a batch's times and fresh TATs
-- repeat, and a conversion costs more than the lookup.
local g_text = {}
local function text_of(x)
  local t = g_text[x]
  if not t then
    t = tostring(x)
    g_text[x] = t
  end
  return t
end

local function decode_field(field, raw)
  if string.byte(field) == 117 then return tonumber(raw or '0') end  -- 'u:'
  if not raw then return {tat = 0, list = ''} end
  local bar = string.find(raw, '|', 1, true)
  if not bar then return {tat = tonumber(raw) or 0, list = ''} end
  return {tat = tonumber(string.sub(raw, 1, bar - 1)) or 0, list = string.sub(raw, bar + 1)}
end

local function state_of(field)
  local v = g_fields[field]
  if v == nil then
    v = decode_field(field, redis.call('HGET', g_state, field))
    g_fields[field] = v
  end
  return v
end

local function mark_of(field)
  local v = g_marks[field]
  if v == nil then
    v = redis.call('HGET', g_lists, field) or false
    g_marks[field] = v
  end
  return v
end

-- The guard's context of a claim (its argument's decoded guard), with the
-- claim's user and the names of the state fields its checks read (fd, fn:
-- nil when no check reads them); nil if the claim came without one.
local function guard_context(user, g)
  if g and not g.fu then
    g.user, g.fu = user, 'u:' .. user
    if g_reads_device and g.device ~= '' then g.fd = 'd:' .. g.device end
    if g_reads_network and g.network ~= '' then g.fn = 'n:' .. g.network end
  end
  return g
end

-- Read ahead what a batch's guarded claims (the claim arguments of `batch` with a
-- GuardArg `guard`) will check, as guard_context names it: their state fields
-- (one HMGET), their list marks when the campaign has lists, and, when a risk
-- rule reads lapses, each user's lapses. Anything not read ahead is read when
-- it is met. One pass over the batch names everything.
local function guard_prefetch_batch(cfg, batch)
  local want, n = {}, 0
  local contexts, nc = {}, 0
  local user_rate = cfg.user and true or false
  local function ask(f)  -- one function a batch, not a closure a field
    if f and g_fields[f] == nil then
      g_fields[f] = false  -- asked
      n = n + 1
      want[n] = f
    end
  end
  for _, c in ipairs(batch) do
    local g = c.guard
    if g then
      g = guard_context(c.user, g)
      nc = nc + 1
      contexts[nc] = g
      ask(user_rate and g.fu)
      ask(g.fd)
      ask(g.fn)
    end
  end
  local v = hmget_chunked(g_state, want)
  for i = 1, n do g_fields[want[i]] = decode_field(want[i], v[i]) end
  if cfg.lists then
    local marks = {}
    for _, g in ipairs(contexts) do
      marks[#marks + 1] = g.fu
      marks[#marks + 1] = 'd:' .. g.device
      marks[#marks + 1] = 'n:' .. g.network
    end
    local m = hmget_chunked(g_lists, marks)
    for i, f in ipairs(marks) do g_marks[f] = m[i] or false end
  end
  for _, rule in ipairs(cfg.risk) do
    if rule.signal == 'lapses' and nc > 0 then
      local fields = {}
      for i, g in ipairs(contexts) do fields[i] = g.user .. '|~lapsed' end
      local l = hmget_chunked(K.users, fields)
      g_lapses = {}
      for i, g in ipairs(contexts) do
        local raw = l[i]
        g_lapses[g.user] = raw and tonumber(raw) or 0
      end
      break
    end
  end
end

-- Distinct accounts on one device or network over a sliding window, exact
-- and bounded. `list` is "<ms> <user>," for each account last seen there at
-- ms (user ids have neither space nor comma), at most reject_above of them,
-- as a new account above that is refused, never added. Returns how many
-- distinct accounts the window holds counting `user`, and the list once
-- `user` is seen now (nil when over `cap`: no need to go on). `entry` is the
-- request's own item, "<now> <user>,", made once for both lists.
local function accounts_seen(list, now, user, window, cap, entry)
  if list == '' then return 1, entry end
  local cutoff, n, kept = now - window, 1, {}
  for t, u in string.gmatch(list, '(%d+) ([^,]*),') do
    if u ~= user and tonumber(t) > cutoff then
      n = n + 1
      if n > cap then return n, nil end
      kept[n - 1] = t .. ' ' .. u .. ','
    end
  end
  kept[n] = entry
  return n, table.concat(kept)
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
    local l = {mark_of(g.fu), mark_of('d:' .. g.device), mark_of('n:' .. g.network)}
    for i, why in ipairs({'user_blocked', 'device_blocked', 'network_blocked'}) do
      if l[i] == 'b' then return {BLOCKED, why, ''} end
      if l[i] == 'a' then allowed = true end
    end
  end
  -- Rates: an allowed user, device or network (a campus NAT) is exempt from
  -- the device and network limits, never from the user's or the campaign's.
  local wait, scope, ok, retry = 0, '', true, 0
  local u_tat, dev, d_tat, net, n_tat, c_tat
  local lim = cfg.user
  if lim then
    ok, retry, u_tat = gcra_step(state_of(g.fu), now, lim.interval_ms, lim.burst)
    if not ok then wait, scope = retry, 'user' end
  end
  if not allowed then
    lim = cfg.device
    if lim and g.fd then
      dev = state_of(g.fd)
      ok, retry, d_tat = gcra_step(dev.tat, now, lim.interval_ms, lim.burst)
      if not ok and retry > wait then wait, scope = retry, 'device' end
    end
    lim = cfg.network
    if lim and g.fn then
      net = state_of(g.fn)
      ok, retry, n_tat = gcra_step(net.tat, now, lim.interval_ms, lim.burst)
      if not ok and retry > wait then wait, scope = retry, 'network' end
    end
  end
  lim = cfg.campaign
  if lim then  -- the campaign's limiter, from this batch's running TAT
    local step = lim.interval_ms
    local tat = math.max(campaign_tat or tonumber(redis.call('GET', g_limiter) or '0'), now)
    local over = tat + step - now - step * lim.burst
    if over > 0 and math.ceil(over) > wait then wait, scope = math.ceil(over), 'campaign' end
    c_tat = tat + step
  end
  if wait > 0 then return {THROTTLED, scope, wait} end
  -- Within its rates, the request is charged to them, whatever comes next:
  -- a bot refused by a later check still spends its network's budget.
  if u_tat then g_fields[g.fu], g_dirty[g.fu] = u_tat, true end
  if d_tat then dev.tat, g_dirty[g.fd] = d_tat, true end
  if n_tat then net.tat, g_dirty[g.fn] = n_tat, true end
  if c_tat then campaign_tat = c_tat end
  local level, why = 0, ''
  local d_list, n_list  -- the device's and network's accounts once this one is let through
  if not allowed then
    local acc = cfg.accounts_per_device
    local entry = (acc or cfg.accounts_per_network)  -- this request in an accounts list
      and text_of(now) .. ' ' .. g.user .. ','
    if acc and g.fd then
      local n
      n, d_list = accounts_seen(state_of(g.fd).list, now, g.user, acc.window_ms,
                                acc.reject_above, entry)
      if n > acc.reject_above then return {BLOCKED, 'accounts_per_device', ''} end
      if n > acc.challenge_above then level, why = 1, 'accounts_per_device' end
    end
    acc = cfg.accounts_per_network
    if acc and g.fn then
      local n
      n, n_list = accounts_seen(state_of(g.fn).list, now, g.user, acc.window_ms,
                                acc.reject_above, entry)
      if n > acc.reject_above then return {BLOCKED, 'accounts_per_network', ''} end
      if n > acc.challenge_above then level, why = level + 1, 'accounts_per_network' end
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
  -- Accounts are recorded only for a request let through.
  if d_list then
    local e = g_fields[g.fd]
    e.list, e.window, g_dirty[g.fd] = d_list, cfg.accounts_per_device.window_ms, true
  end
  if n_list then
    local e = g_fields[g.fn]
    e.list, e.window, g_dirty[g.fn] = n_list, cfg.accounts_per_network.window_ms, true
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

-- When a changed field may expire: its time rounded up on a grid that grows
-- with the distance (1 s, or an eighth to a quarter of the field's life), so
-- that one HSETEX sets many fields. A field outliving its time is harmless:
-- a past TAT and accounts out of their window read as "fresh".
local function expiry_of(at, now)
  local step = 1024
  while step * 8 < at - now do step = step * 2 end
  return math.ceil(at / step) * step
end

-- At the end of the script: the state fields the run changed (one HSETEX
-- per expiry), the campaign limiter's TAT, the refusal counts (K.counts) and
-- one `requests_refused` event for the run's refusals
-- ("user,code,detail,value,device,network;...").
local function guard_flush(now)
  local by_ttl, ttls, ttl_of = {}, {}, {}  -- ttl_of: by expiry time (many share one)
  for field in pairs(g_dirty) do
    local e, value, at = g_fields[field], nil, nil
    if type(e) == 'number' then
      value, at = text_of(e), e
    else
      -- A list is kept a window after it was last written (its newest account
      -- is at most that old); lists of a check since removed are dropped.
      local window = e.window
      if not window then
        local acc = g_cfg and g_cfg[string.byte(field) == 100 and 'accounts_per_device'
                                or 'accounts_per_network']
        window = acc and acc.window_ms or 0
      end
      if window == 0 then e.list = '' end
      value = (e.tat > 0 and text_of(e.tat) or '') .. '|' .. e.list
      at = math.max(e.tat, e.list ~= '' and now + window or 0)
    end
    local ttl = ttl_of[at]
    if not ttl then
      ttl = math.max(1, expiry_of(at, now) - now)
      ttl_of[at] = ttl
    end
    local fv = by_ttl[ttl]
    if not fv then
      fv = {n = 0}
      by_ttl[ttl] = fv
      ttls[#ttls + 1] = ttl
    end
    local k = fv.n
    fv[k + 1], fv[k + 2], fv.n = field, value, k + 2
  end
  for _, ttl in ipairs(ttls) do
    local fv = by_ttl[ttl]
    for i = 1, fv.n, 2000 do
      local last = math.min(i + 1999, fv.n)
      redis.call('HSETEX', g_state, 'PX', ttl, 'FIELDS', (last - i + 1) / 2,
                 unpack(fv, i, last))
    end
  end
  if campaign_tat then gcra_commit(g_limiter, now, campaign_tat) end
  for name, n in pairs(g_tally) do count(name, n) end
  if #g_refused > 0 then
    emit(now, 'requests_refused', {'n', #g_refused, 'refusals', table.concat(g_refused, ';')})
  end
end
