-- A claim batch's writes, gathered and made once at its end (holds_flush):
-- the users' units, the new claim records, the expiry list and the event
-- sequence. Each claim then costs one XADD of its own; everything else is a
-- handful of calls per batch. The script is atomic, so nobody sees the cache
-- and Redis differ. Pasted after common by claim_batch (and any script that
-- places sale holds in bulk): call holds_begin after the sweep and before the
-- first claim, holds_flush once after the last.
--
-- The expiry list (K.expiry) holds claim ids in deadline order; a batch's
-- holds share one deadline, so they go to its tail unless that deadline is
-- earlier than the tail's (meta 'xtail': the hold TTL was shortened, or the
-- clock offset moved back), in which case they go to the deadlines zset.
--@include allocations

local hb_known = {}  -- claim_id -> its stored record, for the batch's ids that exist
local hb_units = {}  -- user -> {total, by SKU} as the batch leaves them
local hb_dirty = {}  -- users whose units changed, in order
local hb_claims = {}  -- HSET arguments: claim_id, record, ...
local hb_expiry = {}  -- ids of the new holds, in order
local hb_deadline = nil  -- their deadline (one per batch)
local hb_persons = {}  -- presales: identity -> units held+sold by the real person
local hb_persons_dirty = {}  -- identities whose units changed, in order
local hb_person_field = {}  -- identity -> its users-hash field '~p|<identity>', named once
local hb_evseq = nil  -- the event sequence as the batch found it
local hb_marks = {}  -- other users-hash fields the batch sets (bundles' links): field, value, ...

-- Read what the batch's claims need in two calls: the records of their ids
-- (a retried batch finds its first answers) and their users' units (and, for a
-- per_person limit, their persons' units: `persons`, the identities).
local function holds_begin(claim_ids, users, persons)
  local raw = hmget_chunked(K.claims, claim_ids)
  for i, id in ipairs(claim_ids) do
    if raw[i] then hb_known[id] = raw[i] end
  end
  local fresh, seen = {}, {}
  for _, u in ipairs(users) do
    if not seen[u] then seen[u] = true; fresh[#fresh + 1] = u end
  end
  local n_users = #fresh
  local named = {}  -- the persons read, in the order of their fields after the users'
  for _, p in ipairs(persons or {}) do
    if not hb_person_field[p] then
      local field = '~p|' .. p
      hb_person_field[p] = field
      fresh[#fresh + 1] = field
      named[#named + 1] = p
    end
  end
  raw = hmget_chunked(K.users, fresh)
  for i = 1, n_users do
    local total, by = parse_units(raw[i] or nil)
    hb_units[fresh[i]] = {total = total, by = by}
  end
  for i, p in ipairs(named) do
    local units = raw[n_users + i]
    hb_persons[p] = units and tonumber(units) or 0
  end
  evseq_cache = tonumber(redis.call('HGET', K.meta, 'evseq') or '0')
  hb_evseq = evseq_cache
end

-- The stored record of a claim id of this batch, or nil if it has none.
local function hold_known(claim_id)
  return hb_known[claim_id]
end

-- A user's units held+sold now: total, and of `sku`.
local function hold_units(user, sku)
  local u = hb_units[user]
  if not u then  -- not named to holds_begin
    local total, by = units_of(user)
    u = {total = total, by = by}
    hb_units[user] = u
  end
  return u.total, u.by[sku] or 0
end

-- Presales: a real person's units held+sold now.
local function hold_person(identity)
  local n = hb_persons[identity]
  if not n then
    n = tonumber(redis.call('HGET', K.users, '~p|' .. identity) or '0')
    hb_persons[identity] = n
  end
  return n
end

-- A new hold: its units counted to the user, its record, its expiry. Presales:
-- c.person ('' none) counts them to the real person; c.alloc is what it took from
-- allocations; the record keeps both for release_hold.
local function hold_place(claim_id, c)
  local u = hb_units[c.user]
  if not u.dirty then u.dirty = true; hb_dirty[#hb_dirty + 1] = c.user end
  if c.person ~= '' then
    local n = hold_person(c.person)
    if not hb_persons_dirty[c.person] then
      hb_persons_dirty[c.person] = true
      hb_persons_dirty[#hb_persons_dirty + 1] = c.person
    end
    hb_persons[c.person] = n + c.qty
  end
  u.total, u.by[c.sku] = u.total + c.qty, (u.by[c.sku] or 0) + c.qty
  local raw = format_claim(c)  -- (deadline and created may come as text: made once a batch)
  hb_known[claim_id] = raw
  hb_claims[#hb_claims + 1] = claim_id
  hb_claims[#hb_claims + 1] = raw
  hb_expiry[#hb_expiry + 1] = claim_id
  hb_deadline = c.deadline
end

-- A new sale hold of a claim batch (claim_batch, and each line of claim_bundle), all
-- its checks passed: `c` its record's fields (user, sku, qty, deadline, price, created;
-- deadline and created as text, made once per batch), `person` the identity its units
-- count to ('' none: no per_person limit), `take` what it takes from allocations (nil:
-- the SKU has none) through `channel`. Places it (hold_place) and emits its claim_held
-- event, which also names its `bundle` ('' none), the presale `code` it spent ('' none)
-- and the Idempotency-Key slot and fingerprint of its request (`slot` 0: none).
local function hold_new(now, claim_id, c, person, take, channel, bundle, code, slot, fingerprint)
  c.status, c.person, c.alloc = 'held', person, ''
  local ev = {'claim', claim_id, 'user', c.user, 'sku', c.sku, 'qty', c.qty, 'price', c.price,
              'deadline', c.deadline}
  if bundle ~= '' then ev[#ev + 1] = 'bundle'; ev[#ev + 1] = bundle end
  if person ~= '' then ev[#ev + 1] = 'identity'; ev[#ev + 1] = person end
  if take then
    c.alloc = allocation_spend(take)
    if c.alloc ~= '' then ev[#ev + 1] = 'alloc'; ev[#ev + 1] = c.alloc end
    ev[#ev + 1] = 'channel'; ev[#ev + 1] = channel
  end
  if code ~= '' then ev[#ev + 1] = 'code'; ev[#ev + 1] = code end
  if slot > 0 then  -- lets recovery rebuild the idempotent answer
    ev[#ev + 1] = 'idem'; ev[#ev + 1] = KEYS[slot]
    ev[#ev + 1] = 'fp'; ev[#ev + 1] = fingerprint
  end
  hold_place(claim_id, c)
  emit(now, 'claim_held', ev)
end

-- Another users-hash field this batch sets, written with the users' units at its end.
local function hold_mark(field, value)
  hb_marks[#hb_marks + 1] = field
  hb_marks[#hb_marks + 1] = value
end

-- remember(slot, fingerprint, code, claim_id, deadline, price, created): a claim
-- script's decisive answer kept `idem_ttl` ms under the request's Idempotency-Key
-- (KEYS[slot]; slot 0: none, nothing kept).
local function remembering(idem_ttl)
  return function(slot, fingerprint, code, claim_id, deadline, price, created)
    if slot > 0 then
      redis.call('SET', KEYS[slot], format_claim_answer({fingerprint = fingerprint, code = code,
                 claim_id = claim_id or '', deadline = deadline, price = price,
                 created = created}), 'PX', idem_ttl)
    end
  end
end

-- Calls of at most 1000 arguments after the key (Lua's unpack has a C stack limit).
local function call_chunked(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

local function holds_flush()
  local users = {}
  for _, user in ipairs(hb_dirty) do
    users[#users + 1] = user
    users[#users + 1] = format_units(hb_units[user].by)
  end
  for _, identity in ipairs(hb_persons_dirty) do
    users[#users + 1] = hb_person_field[identity] or '~p|' .. identity
    users[#users + 1] = hb_persons[identity]
  end
  for _, v in ipairs(hb_marks) do users[#users + 1] = v end
  if #users > 0 then call_chunked('HSET', K.users, users) end
  if #hb_claims > 0 then call_chunked('HSET', K.claims, hb_claims) end
  local meta = {}  -- (nothing when nothing happened: a missing campaign stays missing)
  if evseq_cache ~= hb_evseq then meta[1], meta[2] = 'evseq', evseq_cache end
  if #hb_expiry > 0 then
    local tail = tonumber(redis.call('HGET', K.meta, 'xtail') or '0')
    hb_deadline = tonumber(hb_deadline)
    if hb_deadline >= tail then
      call_chunked('RPUSH', K.expiry, hb_expiry)
      meta[#meta + 1], meta[#meta + 2] = 'xtail', hb_deadline
    else
      local scored = {}
      for _, id in ipairs(hb_expiry) do
        scored[#scored + 1] = hb_deadline
        scored[#scored + 1] = id
      end
      call_chunked('ZADD', K.deadlines, scored)
    end
  end
  if #meta > 0 then redis.call('HSET', K.meta, unpack(meta)) end
  evseq_cache = nil
end

-- The stock of the SKUs a batch touches, read once and written once at its end
-- (the script is atomic: nobody sees the cache and Redis differ). stock_of(sku)
-- answers the SKU's counts, limit, price and steps, whether a waitlist waits for
-- it and its allocations (false: no such SKU); flush_stock writes what changed.
local function stock_cache(now, waitlists, allocated)
  local stock = {}
  local function stock_of(sku)
    local s = stock[sku]
    if s == nil then
      local r = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.h', sku .. '.lim',
                          sku .. '.price', sku .. '.s', sku .. '.ps')
      if not r[1] then
        s = false
      else
        s = {a = tonumber(r[1]), h = tonumber(r[2]), lim = tonumber(r[3]), price = r[4],
             sold = tonumber(r[5]), steps = parse_price_steps(r[6]),
             dirty = false, waiting = waitlists and wl_head(sku) ~= nil,
             allocs = allocated and load_allocations(sku, now) or nil}
        if s.allocs and #s.allocs == 0 then s.allocs = nil end
      end
      stock[sku] = s
    end
    return s
  end
  local function flush_stock()
    for sku, s in pairs(stock) do
      if s and s.dirty then redis.call('HSET', K.stock, sku .. '.a', s.a, sku .. '.h', s.h) end
      if s and s.allocs then allocations_flush(s.allocs) end
    end
  end
  return stock_of, flush_stock
end
