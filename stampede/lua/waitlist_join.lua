-- waitlist_join: a user joins a sold-out SKU's waitlist, one entry per SKU.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     user id            ARGV[2] sku            ARGV[3] qty
-- ARGV[4]     expiry (ms) of the admission token the user showed, verified by
--             the engine; -1 if none (needed only with a waiting room)
-- ARGV[5]     the most lapsed holds to expire first
-- Returns     {code, created, status, position, qty, joined_ms, claim_id}
--             (created 0: the user's existing entry, answered again)
--
-- Refusals: CAMPAIGN_MISSING (no campaign state), FENCED, NOT_FOUND (no SKU or waitlist), the sale's gate
-- (not open, paused, closed), ADMISSION_REQUIRED, INVALID (qty),
-- LIMIT_EXCEEDED (the offer would take the user over a limit),
-- NOT_SOLD_OUT (units are available or a wave is coming: claim instead),
-- WAITLIST_FULL (the SKU's list is at the campaign's maximum length).
--@include common

local user, sku, qty, token_exp = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local present = campaign_present()
if present ~= OK then return {present} end
local now = now_ms()
release_due_waves(now)
expire_due_holds(now, tonumber(ARGV[5]))
local m = redis.call('HMGET', K.meta, 'wl_max', 'per_user', 'max_qty', 'wr_on')
if not m[1] then return {NOT_FOUND} end
local gate = sale_gate(now)
if gate ~= OK then return {gate} end
if room_mode(m[4]) and not admitted(now, user, token_exp, m[4]) then return {ADMISSION_REQUIRED} end
local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.lim')
if not s[1] then return {NOT_FOUND} end
local field = user .. '|' .. sku
local raw = redis.call('HGET', K.wlentries, field)
if raw then
  local e = parse_entry(raw)
  local member = format_wl_member({sku = sku, seq = e.seq, user = user})
  local position = 0
  if e.status == 'waiting' then
    local lo = wl_range(sku)
    position = redis.call('ZLEXCOUNT', K.waitlist, lo, '(' .. member) + 1
  end
  return {OK, 0, e.status, position, e.qty, e.joined, e.claim}
end
if qty < 1 or qty > tonumber(m[3]) then return {INVALID} end
local held, by = units_of(user)
local per_user, lim = tonumber(m[2]), tonumber(s[2])
if (per_user >= 0 and held + qty > per_user)
    or (lim >= 0 and (by[sku] or 0) + qty > lim) then
  return {LIMIT_EXCEEDED}
end
local waiting = redis.call('ZLEXCOUNT', K.waitlist, wl_range(sku))
if waiting == 0 then
  if tonumber(s[1]) > 0 then return {NOT_SOLD_OUT} end
  for _, wave in ipairs(redis.call('ZRANGE', K.waves, 0, -1)) do
    if parse_wave(wave).sku == sku then return {NOT_SOLD_OUT} end
  end
end
if waiting >= tonumber(m[1]) then return {WAITLIST_FULL} end
-- All checks passed: write.
local seq = string.format('%012d', redis.call('HINCRBY', K.meta, 'wlseq', 1))
redis.call('ZADD', K.waitlist, 0, format_wl_member({sku = sku, seq = seq, user = user}))
redis.call('HSET', K.wlentries, field, format_entry({status = 'waiting', seq = seq, qty = qty,
                                                    joined = now, claim = ''}))
count('waitlist_joined')
-- (The entry's place is 'wseq': 'seq' is the event's own number in its header.)
emit(now, 'waitlist_joined', {'user', user, 'sku', sku, 'qty', qty, 'wseq', seq})
return {OK, 1, 'waiting', waiting + 1, qty, now, ''}
