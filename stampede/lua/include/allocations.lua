-- Presale allocations (stampede/domain/allocations.py): a SKU's stock split into
-- units reserved per channel or tier (meta 'al:<sku>', state 'al:<sku>:<name>':
-- units still reserved, -1 once returned) and the shared pool, the rest of its
-- available units. Every claim may take from the shared pool; a claim through
-- an allocation's channel (or of its tier) also from it, first.

local function set_of(text)
  local s = nil
  for item in string.gmatch(text, '[^,]+') do
    s = s or {}
    s[item] = true
  end
  return s
end

-- The SKU's allocations with their reserved units ({} when it has none); those
-- whose return time has come go back to the shared pool now (an event each),
-- as due waves are released: state that time, not a claim, changes.
local function load_allocations(sku, now)
  local raw = redis.call('HGET', K.meta, 'al:' .. sku)
  local out = {serving = {}}
  if not raw or raw == '' then return out end
  for part in string.gmatch(raw, '[^;]+') do
    local name, ret, ch, ti = string.match(part, '^([^/]*)/([^/]*)/([^/]*)/([^/]*)$')
    local field = 'al:' .. sku .. ':' .. name
    local a = {name = name, field = field, channels = set_of(ch), tiers = set_of(ti),
               r = tonumber(redis.call('HGET', K.meta, field) or '-1')}
    local returns = tonumber(ret)
    if a.r >= 0 and returns > 0 and now >= returns then
      redis.call('HSET', K.meta, field, -1)
      emit(now, 'allocation_returned', {'sku', sku, 'allocation', name, 'qty', a.r,
                                        'by', 'schedule'})
      a.r = -1
    end
    out[#out + 1] = a
  end
  return out
end

-- Does allocation `a` serve a claimant of `channel` and `tiers` (by its rules, whatever
-- it has left)?
local function serves(a, channel, tiers)
  if a.channels and not a.channels[channel] then return false end
  if a.tiers then
    for _, t in ipairs(tiers) do
      if a.tiers[t] then return true end
    end
    return false
  end
  return true
end

-- The allocations that serve a claimant, in spec order; kept per run by tiers and
-- channel (`allocs.serving`: memo_node by tiers, then by channel), as claimants of
-- a rush mostly come alike.
local function serving(allocs, channel, tiers)
  local node = memo_node(allocs.serving, tiers)
  local by_channel = node[MEMO_VALUE]
  if not by_channel then
    by_channel = {}
    node[MEMO_VALUE] = by_channel
  end
  local list = by_channel[channel]
  if not list then
    list = {}
    for _, a in ipairs(allocs) do
      if serves(a, channel, tiers) then list[#list + 1] = a end
    end
    by_channel[channel] = list
  end
  return list
end

-- What a claim of `qty` takes: a flat list allocation, units, ... from the
-- allocations that admit it (in spec order), the rest from the shared pool; nil when the
-- allocations it may use and the shared pool hold fewer than qty units (or the
-- SKU fewer available: reserved units may not be released yet).
local function allocation_take(allocs, available, qty, channel, tiers)
  if qty > available then return nil end
  local reserved, own = 0, 0
  for _, a in ipairs(allocs) do
    if a.r > 0 then reserved = reserved + a.r end
  end
  local mine = serving(allocs, channel, tiers)
  for _, a in ipairs(mine) do
    if a.r > 0 then own = own + a.r end
  end
  local shared = available - reserved
  if shared < 0 then shared = 0 end
  if qty > own + shared then return nil end
  local take, k, left = {}, 0, qty
  for _, a in ipairs(mine) do
    if left == 0 then break end
    if a.r > 0 then
      local n = math.min(a.r, left)
      take[k + 1], take[k + 2], k = a, n, k + 2
      left = left - n
    end
  end
  return take
end

-- Spend a take: the allocations' reserved units (written once per script by
-- allocations_flush), and "name:n,..." for the claim.
local function allocation_spend(take)
  if #take == 2 then  -- (the usual take: one allocation's units, its text made once a run)
    local a, n = take[1], take[2]
    a.r, a.dirty = a.r - n, true
    local texts = a.texts
    if not texts then
      texts = {}
      a.texts = texts
    end
    local text = texts[n]
    if not text then
      text = a.name .. ':' .. n
      texts[n] = text
    end
    return text
  end
  local parts = {}
  for i = 1, #take, 2 do
    local a, n = take[i], take[i + 1]
    a.r, a.dirty = a.r - n, true
    parts[#parts + 1] = a.name .. ':' .. n
  end
  return table.concat(parts, ',')
end

local function allocations_flush(allocs)
  for _, a in ipairs(allocs) do
    if a.dirty then redis.call('HSET', K.meta, a.field, a.r) end
  end
end

-- ---- presales: the sweeper returns due allocations (sweep.lua), so the return and
-- its allocation_returned event happen within one sweep of returns_at even when no
-- claim comes. Meta 'al_next' keeps the earliest returns_at still pending ('0'
-- none; absent or '' after a define or a PATCH of allocations: scan): before it
-- the sweep reads one meta field and does nothing.
local function return_due_allocations(now)
  local m = redis.call('HMGET', K.meta, 'al', 'al_next')
  if m[1] ~= '1' then return end
  local next_ms = tonumber(m[2] or '')
  if next_ms and (next_ms == 0 or next_ms > now) then return end
  local earliest = 0
  for _, field in ipairs(redis.call('HKEYS', K.stock)) do
    local sku = string.match(field, '^(.+)%.price$')
    if sku then
      load_allocations(sku, now)  -- returns the due ones, an event each
      for part in string.gmatch(redis.call('HGET', K.meta, 'al:' .. sku) or '', '[^;]+') do
        local name, ret = string.match(part, '^([^/]*)/([^/]*)/')
        local returns = tonumber(ret) or 0
        local r = tonumber(redis.call('HGET', K.meta, 'al:' .. sku .. ':' .. name) or '-1')
        if r >= 0 and returns > 0 and (earliest == 0 or returns < earliest) then
          earliest = returns
        end
      end
    end
  end
  redis.call('HSET', K.meta, 'al_next', earliest)
end
