-- Shared helpers, pasted at the top of every operation by the registry.
--
-- Every operation gets the campaign's fixed key set as KEYS[1..8], in this
-- order (built by engine/keys.py, all under the campaign's hash tag):
--   1 meta       hash: config, state, evseq, epoch, fenced, time_offset_ms
--   2 stock      hash: "<sku>.a|h|s|r" available/held/sold/released,
--                      "<sku>.price", "<sku>.lim" (per-user-per-SKU limit)
--   3 users      hash: "<user>" held+sold in the campaign, "<user>|<sku>" per SKU
--   4 claims     hash: claim_id -> "status|user|sku|qty|deadline_ms|price|created_ms"
--   5 deadlines  zset: claim_id scored by its hold deadline (ms)
--   6 waves      zset: "<idx>|<sku>|<qty>" scored by release time (ms)
--   7 events     stream: one entry per change, field seq is contiguous
--   8 counts     hash: claims by outcome, for stats
-- Lua never builds a key name: extra keys (idempotency) come in KEYS[9..].

-- Outcome codes: the one table engine/outcomes.py mirrors (a test checks).
local OK = 0
local SOLD_OUT = 1
local LIMIT_EXCEEDED = 2
local NOT_OPEN = 3
local PAUSED = 4
local CLOSED = 5
local NOT_FOUND = 6
local HOLD_EXPIRED = 7
local CONFLICT = 8
local IDEMPOTENCY_MISMATCH = 9
local INVALID = 10
local FENCED = 11

local K = {
  meta = KEYS[1], stock = KEYS[2], users = KEYS[3], claims = KEYS[4],
  deadlines = KEYS[5], waves = KEYS[6], events = KEYS[7], counts = KEYS[8],
}

-- Server time in ms plus the campaign's test offset (0 in production):
-- never a gateway's clock.
local function now_ms()
  local t = redis.call('TIME')
  local off = tonumber(redis.call('HGET', K.meta, 'time_offset_ms') or '0')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + off
end

-- Append one event; `fields` is a flat list of name, value pairs. The
-- epoch is read once per script run: it cannot change within one.
local epoch_cache = nil
local function emit(now, etype, fields)
  local seq = redis.call('HINCRBY', K.meta, 'evseq', 1)
  epoch_cache = epoch_cache or redis.call('HGET', K.meta, 'epoch') or '0'
  local args = {K.events, '*', 'seq', seq, 'type', etype, 'ts', now, 'epoch', epoch_cache}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  redis.call('XADD', unpack(args))
  return seq
end

local function count(field, by)
  redis.call('HINCRBY', K.counts, field, by or 1)
end

-- Claim records are one pipe-joined string each: ids never contain '|'.
local function parse_claim(raw)
  local st, user, sku, qty, deadline, price, created =
    string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return {status = st, user = user, sku = sku, qty = tonumber(qty),
          deadline = tonumber(deadline), price = tonumber(price), created = tonumber(created)}
end

local function format_claim(c)
  return table.concat({c.status, c.user, c.sku, c.qty, c.deadline, c.price, c.created}, '|')
end

-- Release every wave whose time has come: stock arrives with no cron.
local function release_due_waves(now)
  local due = redis.call('ZRANGEBYSCORE', K.waves, '-inf', now)
  for _, member in ipairs(due) do
    local idx, sku, qty = string.match(member, '^([^|]*)|([^|]*)|([^|]*)$')
    qty = tonumber(qty)
    redis.call('HINCRBY', K.stock, sku .. '.a', qty)
    redis.call('HINCRBY', K.stock, sku .. '.r', qty)
    redis.call('ZREM', K.waves, member)
    emit(now, 'wave_released', {'sku', sku, 'qty', qty, 'wave', idx})
  end
end

-- Return a held claim's units to stock, exactly once: the caller has
-- checked that the claim is held; its status moves to `new_status`.
local function release_hold(now, claim_id, c, new_status)
  redis.call('HINCRBY', K.stock, c.sku .. '.h', -c.qty)
  redis.call('HINCRBY', K.stock, c.sku .. '.a', c.qty)
  redis.call('HINCRBY', K.users, c.user, -c.qty)
  redis.call('HINCRBY', K.users, c.user .. '|' .. c.sku, -c.qty)
  redis.call('ZREM', K.deadlines, claim_id)
  c.status = new_status
  redis.call('HSET', K.claims, claim_id, format_claim(c))
  count(new_status)
  emit(now, 'claim_' .. new_status,
       {'claim', claim_id, 'user', c.user, 'sku', c.sku, 'qty', c.qty})
end

-- Expire up to `limit` holds whose deadline has passed.
local function expire_due_holds(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', now, 'LIMIT', 0, limit)
  for _, claim_id in ipairs(due) do
    local raw = redis.call('HGET', K.claims, claim_id)
    if raw then
      local c = parse_claim(raw)
      if c.status == 'held' then
        release_hold(now, claim_id, c, 'expired')
      else
        redis.call('ZREM', K.deadlines, claim_id)
      end
    else
      redis.call('ZREM', K.deadlines, claim_id)
    end
  end
  return #due
end

-- Can new claims be taken now? Returns OK or the refusal code.
local function sale_gate(now)
  local m = redis.call('HMGET', K.meta, 'state', 'opens_ms', 'closes_ms', 'fenced')
  if not m[1] then return NOT_FOUND end
  if m[4] == '1' then return FENCED end
  if m[1] == 'closed' or now >= tonumber(m[3]) then return CLOSED end
  if m[1] == 'paused' then return PAUSED end
  if now < tonumber(m[2]) then return NOT_OPEN end
  return OK
end
