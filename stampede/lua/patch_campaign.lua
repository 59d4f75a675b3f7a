-- patch_campaign: live change of state, schedule and limits, for the next request.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     actor (who asked, for the event)
-- ARGV[2..]   name, value pairs; names: state (active|paused|closed), opens_ms,
--             closes_ms, hold_ttl_ms, per_user, max_qty, "lim:<sku>"
--             for a SKU's per-user limit (-1: none), "ps:<sku>" for its presale
--             price steps (stampede/domain/pricing.py; '' none), "bd:<name>" for
--             a presale bundle's lines "sku:qty,..." ('' removes it; meta bd as
--             stampede/domain/bundles.py encodes it), "alp:<sku>" for a SKU's presale
--             allocations replaced whole, "<al:sku encoding>#<name:qty,...>"
--             (stampede/domain/allocations.py), and the waiting room's
--             wr_rate, wr_burst, wr_max_active, wr_paused (1|0), and the
--             throttle's th, th_spec (meta), the presale phases ph (meta, as
--             stampede/domain/phases.py encodes them) and th_lists (a JSON object that
--             replaces KEYS[NKEYS + 1], the lists hash); "if:<field>" is a
--             precondition: the meta field must equal the value ('' absent)
-- KEYS[NKEYS + 1] (with th_lists) the throttle's block/allow lists hash
-- Returns     {code, before_json, after_json}; a failed precondition is
--             {CONFLICT, 'precondition', ''}
--
-- A closed campaign stays closed (CONFLICT on a state change). Unknown SKUs
-- are NOT_FOUND, and so are waiting-room settings of a campaign without
-- one; a schedule whose close is not after its open is INVALID, and so is a
-- close at or before a pending wave ({INVALID, 'wave', ''}), and so is a
-- schedule that a presale phase would open outside of ({INVALID, 'phases', ''}),
-- and phases for a campaign with a waitlist or a coupon drop
-- ({INVALID, 'phases_excluded', ''}), and price steps for a coupon drop
-- ({INVALID, 'price_steps_excluded', ''}), and bundles for a coupon drop or a
-- sharded campaign ({INVALID, 'bundles_excluded', ''}), and a bundle line of a
-- SKU the campaign lacks or over max_qty ({INVALID,
-- 'bundle_line:<name>:<i>:sku|qty:<max_qty>', ''}), and more than 64 bundles
-- ({INVALID, 'bundles_too_many', ''}), and a change (of bundles or of the limits)
-- that leaves a bundle in force unclaimable: a line over max_qty or over its SKU's
-- per-user limit, or more units than the per-user limit
-- ({INVALID, 'bundle_limit:<name>:max_per_claim|sku_per_user|per_user:<sku>:<limit>:<units>',
-- ''}; sku '' for per_user), and allocations for a coupon drop, a
-- campaign with a waitlist or a sharded one ({INVALID, 'allocations_excluded', ''}),
-- an allocation's qty below the units holds and sales took from it
-- ({INVALID, 'allocation_taken:<sku>:<i>:<taken>', ''}: what was taken counts from
-- 'alq:<sku>', or for a campaign defined before that field was kept from the claim
-- records, see defined_qtys), and allocations reserving
-- more than the SKU's units available or to come
-- ({INVALID, 'allocations_over:<sku>:<units>:<available>', ''}). Everything
-- is checked before the first write. The waiting room is first brought up
-- to now at its old rate, so a new rate or a pause applies from now on.
--@include common
--@include phases

if redis.call('EXISTS', K.meta) == 0 then return {NOT_FOUND, '', ''} end
local now = now_ms()
local before, after = {}, {}
local writes = {}
local room = false
local bundle_edits = {}  -- presales: {name, lines} in the order given
local alloc_edits = {}  -- presales: {sku, encoding#qtys}
local lim_after = {}  -- SKU per-user limits patched: sku -> limit (-1 none)
for i = 2, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  local sku = string.match(name, '^lim:(.+)$')
  local field = string.match(name, '^if:(.+)$')
  local steps_sku = string.match(name, '^ps:(.+)$')  -- presales: price steps
  local bundle_name = string.match(name, '^bd:(.+)$')  -- presales: bundles
  local alloc_sku = string.match(name, '^alp:(.+)$')  -- presales: allocations
  if alloc_sku then
    if redis.call('HEXISTS', K.stock, alloc_sku .. '.price') == 0 then
      return {NOT_FOUND, '', ''}
    end
    local m = redis.call('HMGET', K.meta, 'coupons', 'shards', 'wl_max')
    if m[1] == '1' or tonumber(m[2] or '1') > 1 or m[3] then
      return {INVALID, 'allocations_excluded', ''}
    end
    alloc_edits[#alloc_edits + 1] = {alloc_sku, value}
  elseif bundle_name then
    local m = redis.call('HMGET', K.meta, 'coupons', 'shards')
    if m[1] == '1' or tonumber(m[2] or '1') > 1 then
      return {INVALID, 'bundles_excluded', ''}
    end
    bundle_edits[#bundle_edits + 1] = {bundle_name, value}
  elseif steps_sku then
    if redis.call('HEXISTS', K.stock, steps_sku .. '.price') == 0 then
      return {NOT_FOUND, '', ''}
    end
    if redis.call('HGET', K.meta, 'coupons') == '1' then
      return {INVALID, 'price_steps_excluded', ''}
    end
    before[name] = redis.call('HGET', K.stock, steps_sku .. '.ps') or ''
    writes[#writes + 1] = {K.stock, steps_sku .. '.ps', value}  -- '' parses as none
    after[name] = value
  elseif field then
    if (redis.call('HGET', K.meta, field) or '') ~= value then
      return {CONFLICT, 'precondition', ''}
    end
  elseif name == 'th_lists' then
    before[name] = redis.call('HLEN', KEYS[NKEYS + 1]) .. ' entries'
    writes[#writes + 1] = {'lists', value}
    after[name] = value
  elseif sku then
    local cur = redis.call('HGET', K.stock, sku .. '.lim')
    if not cur then return {NOT_FOUND, '', ''} end
    before[name] = cur
    lim_after[sku] = value
    writes[#writes + 1] = {K.stock, sku .. '.lim', value}
    after[name] = value
  else
    if string.sub(name, 1, 3) == 'wr_' then
      if redis.call('HGET', K.meta, 'wr_on') ~= '1' then return {NOT_FOUND, '', ''} end
      room = true
    end
    local cur = redis.call('HGET', K.meta, name)
    if name == 'state' and cur == 'closed' and value ~= 'closed' then
      return {CONFLICT, '', ''}
    end
    before[name] = cur or false
    writes[#writes + 1] = {K.meta, name, value}
    after[name] = value
  end
end
local opens = tonumber(after['opens_ms'] or redis.call('HGET', K.meta, 'opens_ms'))
local closes = tonumber(after['closes_ms'] or redis.call('HGET', K.meta, 'closes_ms'))
if closes <= opens then return {INVALID, '', ''} end
local last_wave = redis.call('ZRANGE', K.waves, -1, -1, 'WITHSCORES')
if last_wave[2] and tonumber(last_wave[2]) >= closes then return {INVALID, 'wave', ''} end
local ph = parse_phases(after['ph'] or redis.call('HGET', K.meta, 'ph'))
if ph and (ph[1].opens < opens or ph[#ph].opens >= closes) then  -- listed in order of opening
  return {INVALID, 'phases', ''}
end
if after['ph'] and ph then  -- waitlist offers and coupon claims do not pass the phase gate
  local m = redis.call('HMGET', K.meta, 'wl_max', 'coupons')
  if m[1] or m[2] == '1' then return {INVALID, 'phases_excluded', ''} end
end
-- ---- presales: bundles, edited by name; each edited one checked against the
-- SKUs and max_qty in force (or patched with it), before the first write ----
if #bundle_edits > 0 then
  local old = redis.call('HGET', K.meta, 'bd') or ''
  local names, defs = {}, {}
  for part in string.gmatch(old, '[^;]+') do
    local n, body = string.match(part, '^([^=]+)=(.*)$')
    names[#names + 1] = n; defs[n] = body
  end
  local edited = {}
  for _, e in ipairs(bundle_edits) do
    edited[e[1]] = true
    if e[2] == '' then defs[e[1]] = nil
    else
      if not defs[e[1]] then names[#names + 1] = e[1] end
      defs[e[1]] = e[2]
    end
  end
  local max_qty = tonumber(after['max_qty'] or redis.call('HGET', K.meta, 'max_qty') or '1')
  local parts = {}
  for _, n in ipairs(names) do
    if defs[n] then
      parts[#parts + 1] = n .. '=' .. defs[n]
      local i = 0
      for line_sku, qty in string.gmatch(edited[n] and defs[n] or '', '([^:,]+):(%d+)') do
        if redis.call('HEXISTS', K.stock, line_sku .. '.price') == 0 then
          return {INVALID, 'bundle_line:' .. n .. ':' .. i .. ':' .. 'sku' .. ':' .. max_qty, ''}
        end
        if tonumber(qty) > max_qty then
          return {INVALID, 'bundle_line:' .. n .. ':' .. i .. ':' .. 'qty' .. ':' .. max_qty, ''}
        end
        i = i + 1
      end
    end
  end
  if #parts > 64 then return {INVALID, 'bundles_too_many', ''} end
  local new = table.concat(parts, ';')
  before['bd'], after['bd'] = old, new
  writes[#writes + 1] = {K.meta, 'bd', new}
end
-- ---- presales: every bundle in force stays claimable under the limits in force (or
-- patched with it): a claim of it could never pass its lines' checks otherwise ----
local function bundle_limit(n, over, sku, limit, units)  -- the refusal, its five values
  return {INVALID, 'bundle_limit:' .. n .. ':' .. over .. ':' .. sku .. ':' .. limit .. ':' .. units, ''}
end
local bd = after['bd'] or redis.call('HGET', K.meta, 'bd') or ''
if bd ~= '' and (after['bd'] or after['max_qty'] or after['per_user'] or next(lim_after)) then
  local m = redis.call('HMGET', K.meta, 'max_qty', 'per_user')
  local max_qty = tonumber(after['max_qty'] or m[1] or '1')
  local per_user = tonumber(after['per_user'] or m[2] or '-1')
  for part in string.gmatch(bd, '[^;]+') do
    local n, body = string.match(part, '^([^=]+)=(.*)$')
    local units = 0
    for line_sku, q in string.gmatch(body, '([^:,]+):(%d+)') do
      local qty = tonumber(q)
      units = units + qty
      local over, limit = nil, nil
      local lim = tonumber(lim_after[line_sku] or
                           redis.call('HGET', K.stock, line_sku .. '.lim') or '-1')
      if qty > max_qty then over, limit = 'max_per_claim', max_qty
      elseif lim >= 0 and qty > lim then over, limit = 'sku_per_user', lim end
      if over then return bundle_limit(n, over, line_sku, limit, qty) end
    end
    if per_user >= 0 and units > per_user then
      return bundle_limit(n, 'per_user', '', per_user, units)
    end
  end
end
-- ---- presales: a SKU's allocations replaced whole. A listed one keeps what holds and
-- sales took from it (its reserved units move by the change of qty), a new one
-- reserves its qty, a returned one stays returned, one no longer listed returns its
-- reserved units to the shared pool (an allocation_returned event, by 'patch'); what
-- they reserve must be units the SKU has available or still to come in waves ----
-- A campaign defined before 'alq:<sku>' was kept has none until its first PATCH of
-- allocations: each allocation's qty as defined is then what it still reserves plus
-- what live holds and sales took from it (their records' `alloc`; a lapsed or
-- cancelled hold gave its units back), as `stampede recover` counts them. Read once.
local function defined_qtys(sku, enc)
  local qty = {}
  for part in string.gmatch(enc, '[^;]+') do
    local n = string.match(part, '^([^/]*)/')
    local r = tonumber(redis.call('HGET', K.meta, 'al:' .. sku .. ':' .. n) or '-1')
    if r >= 0 then qty[n] = r end
  end
  if next(qty) == nil then return qty end
  for _, raw in ipairs(redis.call('HVALS', K.claims)) do
    local c = parse_claim(raw)
    if c.sku == sku and c.alloc ~= '' and c.status ~= 'expired' and c.status ~= 'cancelled' then
      for n, t in string.gmatch(c.alloc, '([^:,]+):(%d+)') do
        if qty[n] then qty[n] = qty[n] + tonumber(t) end
      end
    end
  end
  return qty
end
local alloc_returns = {}
for _, e in ipairs(alloc_edits) do
  local sku = e[1]
  local enc, qtys = string.match(e[2], '^([^#]*)#(.*)$')
  local old_enc = redis.call('HGET', K.meta, 'al:' .. sku) or ''
  local old_qtys = redis.call('HGET', K.meta, 'alq:' .. sku) or ''
  local old_qty = {}
  for n, q in string.gmatch(old_qtys, '([^:,]+):(%d+)') do old_qty[n] = tonumber(q) end
  if not redis.call('HGET', K.meta, 'alq:' .. sku) and old_enc ~= '' then
    old_qty = defined_qtys(sku, old_enc)
  end
  local listed, order = {}, {}
  for part in string.gmatch(old_enc, '[^;]+') do
    local n = string.match(part, '^([^/]*)/')
    listed[n], order[#order + 1] = true, n
  end
  local kept, reserving, i = {}, 0, 0
  for n, q in string.gmatch(qtys, '([^:,]+):(%d+)') do
    local field = 'al:' .. sku .. ':' .. n
    local r = tonumber(redis.call('HGET', K.meta, field) or '')
    local reserve = tonumber(q)
    if r and r < 0 then
      reserve = -1  -- returned: its units stay in the shared pool
    elseif r and listed[n] then
      local taken = (old_qty[n] or r) - r
      if reserve < taken then
        return {INVALID, 'allocation_taken:' .. sku .. ':' .. i .. ':' .. taken, ''}
      end
      reserve = reserve - taken
    end
    kept[n] = true
    if reserve > 0 then reserving = reserving + reserve end
    writes[#writes + 1] = {K.meta, field, reserve}
    i = i + 1
  end
  for _, n in ipairs(order) do
    local r = tonumber(redis.call('HGET', K.meta, 'al:' .. sku .. ':' .. n) or '-1')
    if not kept[n] and r >= 0 then
      writes[#writes + 1] = {K.meta, 'al:' .. sku .. ':' .. n, -1}
      alloc_returns[#alloc_returns + 1] = {sku, n, r}
    end
  end
  local units = tonumber(redis.call('HGET', K.stock, sku .. '.a') or '0')
  for _, member in ipairs(redis.call('ZRANGE', K.waves, 0, -1)) do
    local w = parse_wave(member)
    if w.sku == sku then units = units + w.qty end
  end
  if reserving > units then
    return {INVALID, 'allocations_over:' .. sku .. ':' .. reserving .. ':' .. units, ''}
  end
  before['al:' .. sku], before['alq:' .. sku] = old_enc, old_qtys
  after['al:' .. sku], after['alq:' .. sku], after['al'] = enc, qtys, '1'
  writes[#writes + 1] = {K.meta, 'al:' .. sku, enc}
  writes[#writes + 1] = {K.meta, 'alq:' .. sku, qtys}
  writes[#writes + 1] = {K.meta, 'al', '1'}
  writes[#writes + 1] = {K.meta, 'al_next', ''}  -- the sweeper looks for returns_at again
end
if room then
  local st = advance_queue(now)
  redis.call('HSET', K.meta, 'wr_tokens', st.tokens, 'wr_at', math.max(st.at, now))
end
for _, w in ipairs(writes) do
  if w[1] == 'lists' then
    redis.call('DEL', KEYS[NKEYS + 1])
    local fields = {}
    for f, v in pairs(cjson.decode(w[2])) do
      fields[#fields + 1] = f
      fields[#fields + 1] = v
      if #fields >= 1000 then redis.call('HSET', KEYS[NKEYS + 1], unpack(fields)); fields = {} end
    end
    if #fields > 0 then redis.call('HSET', KEYS[NKEYS + 1], unpack(fields)) end
  else
    redis.call('HSET', w[1], w[2], w[3])
  end
end
local b, a = cjson.encode(before), cjson.encode(after)
emit(now, 'campaign_patched', {'actor', ARGV[1], 'before', b, 'after', a})
for _, r in ipairs(alloc_returns) do
  emit(now, 'allocation_returned', {'sku', r[1], 'allocation', r[2], 'qty', r[3], 'by', 'patch',
                                    'actor', ARGV[1]})
end
return {OK, b, a}
