-- Presale codes (stampede/domain/presale_codes.py). A batch's codes lend a
-- claim the batch's audience tier (for the access phases); each code may make
-- `uses` claims, and is bound to its first claimant when the batch says so.
-- The engine verified the code's signature: it comes here as its id
-- '<batch>.<serial>', or '?' for a code that is not genuine. P is the table
-- of presale keys (presale_keys_at).

-- Every code attempt, genuine or not, passes the code-attempt limiters first, so
-- guessing is throttled before it is refused: the claimant's, their device's and
-- their network's (as the scalper guard keys claims: X-Device-Id, the /24 or /64),
-- each GCRA in a key of its own. Scope (the refusal's reason), interval ms, burst;
-- stampede/domain/presale_codes.py CODE_ATTEMPT_LIMITS says the same (a test
-- keeps the two in step).
local CODE_LIMITS = {{'presale_code', 2000, 5}, {'presale_code_device', 1000, 10},
                     {'presale_code_network', 100, 50}}

-- A claim's limiter keys, in CODE_LIMITS order (false: no device or no network).
local function code_limiters(c)
  local dev, net = c.k_code_device or 0, c.k_code_network or 0
  return {KEYS[c.k_code], dev > 0 and KEYS[dev], net > 0 and KEYS[net]}
end

-- Check a claim's code. Returns the batch record, or nil and the refusal
-- {code, detail[, value]}. Writes only the limiters: one over its limit refuses
-- with the longest wait among those over, and then none is charged.
local function presale_code_check(P, user, code, limiters, now)
  local tats, wait, scope = {}, 0, nil
  for i, lim in ipairs(CODE_LIMITS) do
    if limiters[i] then
      local ok, w, tat = gcra_check(limiters[i], now, lim[2], lim[3])
      if not ok and w > wait then wait, scope = w, lim[1] end
      tats[i] = tat
    end
  end
  if scope then return nil, {THROTTLED, scope, wait} end
  for i in ipairs(CODE_LIMITS) do
    if limiters[i] then gcra_commit(limiters[i], now, tats[i]) end
  end
  local batch, serial = string.match(code, '^(%d+)%.(%d+)$')
  local raw = batch and redis.call('HGET', P.pbatches, batch)
  if not raw then return nil, {PRESALE_CODE_INVALID, 'code_invalid'} end
  local b = parse_presale_batch(raw)
  local n = tonumber(serial)
  if n < 1 or n > b.count then return nil, {PRESALE_CODE_INVALID, 'code_invalid'} end
  local u = redis.call('HMGET', P.pcodes, code .. '.n', code .. '.u')
  if b.bind == 1 and u[2] and u[2] ~= user then
    return nil, {PRESALE_CODE_INVALID, 'code_bound'}
  end
  -- uses given back by holds that lapsed or were cancelled (release_hold, common.lua)
  local back = tonumber(redis.call('HGET', K.users, '~cr|' .. code) or '0')
  if tonumber(u[1] or '0') - back >= b.uses then
    return nil, {PRESALE_CODE_USED, 'code_used:' .. b.uses}
  end
  return b
end

-- The claim holds: spend one use of its code (and bind it, if the batch binds);
-- the batch's "<batch>.codes" counts its codes used at least once, ".claims"
-- the claims they made (stats). The hold is marked "~c|<claim_id>" in the users
-- hash, so a release gives the use back ("~cr|<code>", uses returned).
local function presale_code_spend(P, user, code, b, claim_id)
  redis.call('HSET', K.users, '~c|' .. claim_id, code)
  local batch = string.match(code, '^(%d+)')
  if redis.call('HINCRBY', P.pcodes, code .. '.n', 1) == 1 then
    redis.call('HINCRBY', P.pbatches, batch .. '.codes', 1)
  end
  redis.call('HINCRBY', P.pbatches, batch .. '.claims', 1)
  if b.bind == 1 then redis.call('HSET', P.pcodes, code .. '.u', user) end
end
