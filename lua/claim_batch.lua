-- claim_batch: place holds for a batch of claims in one round trip.
--
-- KEYS[1..8]  the campaign key set (include/common.lua)
-- KEYS[9..]   idempotency keys, one per claim that carries one
-- ARGV[1]     how long to remember an idempotent answer, in ms
-- ARGV[2]     sweep limit: expired holds to release before claiming
-- ARGV[3..]   six per claim: claim_id, user, sku, qty, idem_slot, fingerprint
--             idem_slot is the KEYS index of its idempotency key, 0 if none;
--             fingerprint identifies the request body for mismatch checks.
-- Returns     a flat array, five per claim: code, claim_id, deadline_ms, price,
--             created_ms (code is an outcome; the rest are '' unless OK).
--
-- Every claim is checked fully before its first write. A claim_id that
-- already exists means the batch is a retry of a lost reply (redis-py
-- retries on connection errors): its first answer is returned again.
--@include common

local idem_ttl = tonumber(ARGV[1])
local now = now_ms()
release_due_waves(now)
expire_due_holds(now, tonumber(ARGV[2]))

local gate = sale_gate(now)
local meta = redis.call('HMGET', K.meta, 'per_user', 'hold_ttl_ms', 'max_qty')
local per_user = tonumber(meta[1] or '-1')
local hold_ttl = tonumber(meta[2] or '0')
local max_qty = tonumber(meta[3] or '1')

local out = {}
local function answer(code, claim_id, deadline, price, created)
  out[#out + 1] = code
  out[#out + 1] = claim_id or ''
  out[#out + 1] = deadline or ''
  out[#out + 1] = price or ''
  out[#out + 1] = created or ''
end

-- Remember a decisive answer under the idempotency key.
local function remember(slot, fingerprint, code, claim_id, deadline, price, created)
  if slot > 0 then
    redis.call('SET', KEYS[slot], table.concat({fingerprint, code, claim_id or '',
               deadline or '', price or '', created or ''}, '|'), 'PX', idem_ttl)
  end
end

local function claim_one(claim_id, user, sku, qty, slot, fingerprint)
  if slot > 0 then
    local prior = redis.call('GET', KEYS[slot])
    if prior then
      local fp, code, cid, dl, pr, cr =
        string.match(prior, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
      if fp ~= fingerprint then return answer(IDEMPOTENCY_MISMATCH) end
      return answer(tonumber(code), cid, dl, pr, cr)
    end
  end
  local existing = redis.call('HGET', K.claims, claim_id)
  if existing then
    local c = parse_claim(existing)
    return answer(OK, claim_id, c.deadline, c.price, c.created)
  end
  -- Refusals by state are "try later" answers, not remembered.
  if gate ~= OK then return answer(gate) end
  local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.lim', sku .. '.price')
  if not s[1] then return answer(NOT_FOUND) end
  if qty < 1 or qty > max_qty then return answer(INVALID) end
  local u = redis.call('HMGET', K.users, user, user .. '|' .. sku)
  local held_total = tonumber(u[1] or '0')
  local held_sku = tonumber(u[2] or '0')
  local sku_limit = tonumber(s[2])
  if (per_user >= 0 and held_total + qty > per_user)
      or (sku_limit >= 0 and held_sku + qty > sku_limit) then
    count('limit_exceeded')
    remember(slot, fingerprint, LIMIT_EXCEEDED)
    return answer(LIMIT_EXCEEDED)
  end
  if tonumber(s[1]) < qty then
    count('sold_out')
    remember(slot, fingerprint, SOLD_OUT)
    return answer(SOLD_OUT)
  end
  -- All checks passed: write.
  local deadline = now + hold_ttl
  redis.call('HINCRBY', K.stock, sku .. '.a', -qty)
  redis.call('HINCRBY', K.stock, sku .. '.h', qty)
  redis.call('HINCRBY', K.users, user, qty)
  redis.call('HINCRBY', K.users, user .. '|' .. sku, qty)
  redis.call('HSET', K.claims, claim_id, format_claim({status = 'held', user = user, sku = sku,
    qty = qty, deadline = deadline, price = tonumber(s[3]), created = now}))
  redis.call('ZADD', K.deadlines, deadline, claim_id)
  count('held')
  local ev = {'claim', claim_id, 'user', user, 'sku', sku, 'qty', qty, 'price', s[3],
              'deadline', deadline}
  if slot > 0 then  -- lets recovery rebuild the idempotent answer
    ev[#ev + 1] = 'idem'; ev[#ev + 1] = KEYS[slot]
    ev[#ev + 1] = 'fp'; ev[#ev + 1] = fingerprint
  end
  emit(now, 'claim_held', ev)
  remember(slot, fingerprint, OK, claim_id, deadline, s[3], now)
  return answer(OK, claim_id, deadline, s[3], now)
end

for i = 3, #ARGV, 6 do
  claim_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]),
            ARGV[i + 5])
end
return out
