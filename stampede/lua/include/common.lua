-- Shared helpers, pasted at the top of every operation by the registry.
--
-- Every operation gets the campaign's fixed key set first, as the table K
-- (generated from stampede/state/keys.py CampaignKeys: the names and their
-- order are defined there once), all under the campaign's hash tag:
--   meta       hash: config, state, evseq, epoch, fenced, time_offset_ms
--   stock      hash: "<sku>.a|h|s|r" available/held/sold/released,
--                    "<sku>.price", "<sku>.lim" (per-user-per-SKU limit),
--                    "<sku>.ps" its price steps, "<sku>.rev" revenue confirmed
--   users      hash: "<user>" units held+sold by SKU "<sku>:<n>,..." (parse_units),
--                    "<user>|~lapsed" holds the user let lapse or cancelled
--                    "~p|<identity>" a real person's units held+sold (per_person),
--                    "~c|<claim_id>" the presale code a claim spent, "~cr|<code>"
--                    uses of a code given back by released holds
--   claims     hash: claim_id -> claim record
--   deadlines  zset: claim_id scored by its hold deadline (ms): holds out of
--                    creation order (waitlist offers, paid vouchers, recovered)
--   expiry     list: claim_ids of sale holds in deadline order (include/holds.lua);
--                    meta 'xtail' the last one's deadline. An id stays until it is
--                    swept, whatever became of its claim: the sweep skips it then
--   waves      zset: wave record scored by release time (ms)
--   events     stream: one entry per change, field seq is contiguous
--   counts     hash: claims by outcome, for stats
--   waitlist   zset, every score 0, in member order: wl_member records
--              (seq zero-padded: within a SKU, lexical order is join order)
--   wlentries  hash: "<user>|<sku>" -> entry record (status waiting or offered)
--   offers     hash: claim_id -> "<user>|<sku>" for holds made as waitlist offers
--   queue      zset: waiting-room tickets; user scored by place (an early
--              arrival a random draw in [0,1), a later one 1 + arrival number)
--   admitted   zset: admitted user scored by the end of their window (ms); on a
--              sharded campaign's shard k >= 1 (wr_on 'pass'): the users whose
--              turn a claim used there, scored by when (room_mode below)
-- Records (claim, entry, wave, wl_member, claim_answer, stock_answer) are
-- '|'-joined strings whose fields stampede/state/records.py defines; the
-- generated parse_<record>/format_<record> read and write them.
-- Lua never builds a key name: extra keys (idempotency) come in KEYS[NKEYS + 1..].

-- Outcome codes: the one table stampede/outcomes.py mirrors (a test checks).
-- A refusal may add a detail "reason[:value[:value]]" naming which refusal it
-- is (a key of REFUSALS there) and its numbers, e.g. 'per_sku:2:2'.
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
local ADMISSION_REQUIRED = 12
local WAITLIST_FULL = 13
local NOT_SOLD_OUT = 14
local THROTTLED = 15
local BLOCKED = 16
local CHALLENGE_REQUIRED = 17
-- Internal, never answered to a client: a claim came without the guard
-- context its (newly guarded) campaign needs; the engine sends it again.
local GUARD_CONTEXT_NEEDED = 18
-- Presales: the campaign sells only to access phases the claimant is not in.
local NOT_ELIGIBLE = 30
-- Presale codes: not genuine, not this campaign's, bound to another user; used up.
local PRESALE_CODE_INVALID = 31
local PRESALE_CODE_USED = 32
-- Leftovers: no campaign state at all (never defined, or lost: api.healing asks the store).
local CAMPAIGN_MISSING = 76
-- Sharded campaigns, internal, never answered to a client: this shard's stock
-- cannot serve the claim; the engine borrows from the other shards and sends it again.
local SHARD_DRY = 60

--@include keys
--@include records

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
local evseq_cache = nil  -- set by a claim batch (holds.lua): counted here, written at its end
local function emit(now, etype, fields)
  local seq
  if evseq_cache then
    evseq_cache = evseq_cache + 1
    seq = evseq_cache
  else
    seq = redis.call('HINCRBY', K.meta, 'evseq', 1)
  end
  epoch_cache = epoch_cache or redis.call('HGET', K.meta, 'epoch') or '0'
  redis.call('XADD', K.events, '*', 'seq', seq, 'type', etype, 'ts', now, 'epoch', epoch_cache,
             unpack(fields))
  return seq
end

local function count(field, by)
  redis.call('HINCRBY', K.counts, field, by or 1)
end

-- HMGET of any number of fields, 1000 at a time (Lua's unpack has a C stack limit).
local function hmget_chunked(key, fields)
  local out = {}
  for i = 1, #fields, 1000 do
    local last = math.min(i + 999, #fields)
    local got = redis.call('HMGET', key, unpack(fields, i, last))
    for j = i, last do out[j] = got[j - i + 1] end
  end
  return out
end

-- A user's units held+sold in the campaign: the total and the units by SKU.
local function units_of(user)
  return parse_units(redis.call('HGET', K.users, user))
end

-- Store a user's units by SKU (the field goes when none are left).
local function units_put(user, by)
  local raw = format_units(by)
  if raw == '' then redis.call('HDEL', K.users, user) else redis.call('HSET', K.users, user, raw) end
end

-- Add `n` (may be negative) to a user's units of `sku`.
local function units_add(user, sku, n)
  local _, by = units_of(user)
  by[sku] = (by[sku] or 0) + n
  units_put(user, by)
end

-- A run's memo keyed by a list of strings (a claimant's tiers) without joining
-- them into one (a new string each claim): a tree of tables, one level per item;
-- what is kept for the list sits in its node under the key MEMO_VALUE, a table
-- no item can equal.
local MEMO_VALUE = {}
local function memo_node(root, list)
  local node = root
  for i = 1, #list do
    local item = list[i]
    local next_node = node[item]
    if not next_node then
      next_node = {}
      node[item] = next_node
    end
    node = next_node
  end
  return node
end

-- Presale price steps (stampede/domain/pricing.py): stock field "<sku>.ps",
-- 'price@until_ms@first_units@tier,tier;...' (a condition '' when absent),
-- parsed once per SKU and script run; nil when the SKU has none.
local function parse_price_steps(raw)
  if not raw or raw == '' then return nil end
  local out = {}
  for part in string.gmatch(raw, '[^;]+') do
    local price, until_ms, units, tiers = string.match(part, '^(%d+)@(%d*)@(%d*)@(.*)$')
    local st = {price = price, until_ms = tonumber(until_ms), units = tonumber(units)}
    if tiers ~= '' then
      st.tiers = {}
      for t in string.gmatch(tiers, '[^,]+') do st.tiers[t] = true end
    end
    out[#out + 1] = st
  end
  return out
end

-- The price of a claim: the first step whose every condition holds (before
-- until_ms; `taken`, the SKU's held and sold units with this claim's, within
-- units; one of the claimant's `tiers` in its tiers), else `base`.
local function step_price(steps, base, taken, tiers, now)
  for _, st in ipairs(steps) do
    local ok = (not st.until_ms or now < st.until_ms) and (not st.units or taken <= st.units)
    if ok and st.tiers then
      ok = false
      for _, t in ipairs(tiers) do
        if st.tiers[t] then ok = true; break end
      end
    end
    if ok then return st.price end
  end
  return base
end

-- The lexical range of one SKU's members in K.waitlist (wl_member records
-- start with the SKU): SKU ids never hold '|', and '}' is the byte after it,
-- so no other SKU's members fall inside.
local function wl_range(sku)
  return '[' .. sku .. '|', '(' .. sku .. '}'
end

local function wl_head(sku)
  local lo, hi = wl_range(sku)
  return redis.call('ZRANGEBYLEX', K.waitlist, lo, hi, 'LIMIT', 0, 1)[1]
end

-- Offer the available units of `sku` to its waitlist, head first: a head
-- whose quantity fits gets a hold in its name (an offer, with the campaign's
-- offer TTL); a head over its limit by now is skipped. A head that wants
-- more than is available waits for more, and everyone behind it too: FIFO
-- is exact, and claims see sold_out while anyone waits (claim_batch).
local function offer_waitlist(now, sku)
  if redis.call('EXISTS', K.waitlist) == 0 then return end
  local cfg = redis.call('HMGET', K.meta, 'offer_ttl_ms', 'per_user', 'id', 'salt')
  local s = redis.call('HMGET', K.stock, sku .. '.a', sku .. '.h', sku .. '.price',
                       sku .. '.lim', sku .. '.s', sku .. '.ps')
  if not s[1] then return end
  local avail, held, changed = tonumber(s[1]), tonumber(s[2]), false
  local per_user, sku_lim = tonumber(cfg[2] or '-1'), tonumber(s[4])
  local steps, sold = parse_price_steps(s[6]), tonumber(s[5] or '0')
  while avail > 0 do
    local head = wl_head(sku)
    if not head then break end
    local user = parse_wl_member(head).user
    local field = user .. '|' .. sku
    local e = parse_entry(redis.call('HGET', K.wlentries, field))
    if e.qty > avail then break end
    redis.call('ZREM', K.waitlist, head)
    local total, by = units_of(user)
    local per_sku = by[sku] or 0
    if (per_user >= 0 and total + e.qty > per_user)
        or (sku_lim >= 0 and per_sku + e.qty > sku_lim) then
      redis.call('HDEL', K.wlentries, field)
      count('waitlist_skipped')
      emit(now, 'waitlist_skipped', {'user', user, 'sku', sku, 'qty', e.qty,
                                     'reason', 'limit_exceeded'})
    else
      -- An unguessable id without randomness: the campaign's secret salt
      -- and the entry's unique sequence number, hashed.
      local claim_id = cfg[3] .. '.' .. string.sub(redis.sha1hex(cfg[4] .. '|' .. e.seq), 1, 20)
      local deadline = now + tonumber(cfg[1])
      -- An offer is priced when it is made, as a claim would be (it carries no tiers).
      local price = steps and step_price(steps, s[3], held + sold + e.qty, {}, now) or s[3]
      avail, held, changed = avail - e.qty, held + e.qty, true
      by[sku] = per_sku + e.qty
      units_put(user, by)
      redis.call('HSET', K.claims, claim_id, format_claim({status = 'held', user = user,
        sku = sku, qty = e.qty, deadline = deadline, price = price, created = now}))
      redis.call('ZADD', K.deadlines, deadline, claim_id)
      redis.call('HSET', K.offers, claim_id, field)
      e.status, e.claim = 'offered', claim_id
      redis.call('HSET', K.wlentries, field, format_entry(e))
      count('offered')
      -- claim_held first: to the store, an offer is a hold like any other.
      emit(now, 'claim_held', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', e.qty,
                               'price', price, 'deadline', deadline, 'offer', 1})
      emit(now, 'offer_made', {'claim', claim_id, 'user', user, 'sku', sku, 'qty', e.qty,
                               'deadline', deadline})
    end
  end
  if changed then redis.call('HSET', K.stock, sku .. '.a', avail, sku .. '.h', held) end
end

-- A held claim that was a waitlist offer has been settled (accepted,
-- lapsed or declined): its waitlist entry ends with it.
local function settle_offer(now, claim_id, c, etype)
  if redis.call('HEXISTS', K.offers, claim_id) == 0 then return end
  local field = c.user .. '|' .. c.sku
  local raw = redis.call('HGET', K.wlentries, field)
  if raw and parse_entry(raw).claim == claim_id then redis.call('HDEL', K.wlentries, field) end
  count(etype)
  emit(now, etype, {'claim', claim_id, 'user', c.user, 'sku', c.sku, 'qty', c.qty})
end

-- Release every wave whose time has come: stock arrives with no cron.
local function release_due_waves(now)
  local due = redis.call('ZRANGEBYSCORE', K.waves, '-inf', now)
  for _, member in ipairs(due) do
    local w = parse_wave(member)
    redis.call('HINCRBY', K.stock, w.sku .. '.a', w.qty)
    redis.call('HINCRBY', K.stock, w.sku .. '.r', w.qty)
    redis.call('ZREM', K.waves, member)
    emit(now, 'wave_released', {'sku', w.sku, 'qty', w.qty, 'wave', w.idx})
    offer_waitlist(now, w.sku)
  end
end

-- Return a held claim's units, exactly once, to the SKU's waitlist first
-- and only then to stock: the caller has checked that the claim is held;
-- its status moves to `new_status`. `idem`, the caller's Idempotency-Key if
-- any, goes into the event so recovery can rebuild the remembered answer.
local function release_hold(now, claim_id, c, new_status, idem)
  redis.call('HINCRBY', K.stock, c.sku .. '.h', -c.qty)
  redis.call('HINCRBY', K.stock, c.sku .. '.a', c.qty)
  units_add(c.user, c.sku, -c.qty)
  redis.call('HINCRBY', K.users, c.user .. '|~lapsed', 1)  -- a risk signal (guard.lua)
  -- Presales: the person's units (per_person) and the allocations' units come back,
  -- as the claim's record names them, and the presale code's use.
  local code = redis.call('HGET', K.users, '~c|' .. claim_id)
  if code then  -- the code may make another claim (include/presale_codes.lua)
    redis.call('HINCRBY', K.users, '~cr|' .. code, 1)
    redis.call('HDEL', K.users, '~c|' .. claim_id)
  end
  if c.person ~= '' then redis.call('HINCRBY', K.users, '~p|' .. c.person, -c.qty) end
  if c.alloc ~= '' then  -- to each allocation not yet returned; else they stay shared
    for name, n in string.gmatch(c.alloc, '([^:,]+):(%d+)') do
      local field = 'al:' .. c.sku .. ':' .. name
      if tonumber(redis.call('HGET', K.meta, field) or '-1') >= 0 then
        redis.call('HINCRBY', K.meta, field, n)
      end
    end
  end
  redis.call('ZREM', K.deadlines, claim_id)
  c.status = new_status
  redis.call('HSET', K.claims, claim_id, format_claim(c))
  count(new_status)
  local fields = {'claim', claim_id, 'user', c.user, 'sku', c.sku, 'qty', c.qty}
  if idem and idem ~= '' then fields[#fields + 1] = 'idem'; fields[#fields + 1] = idem end
  emit(now, 'claim_' .. new_status, fields)
  settle_offer(now, claim_id, c, new_status == 'expired' and 'offer_lapsed' or 'offer_declined')
  offer_waitlist(now, c.sku)
end

-- Bundles (stampede/domain/bundles.py): a claim of several SKUs is one claim per
-- line, marked in the users hash ("~b|<bundle>" -> "<name>|<line>,<line>...",
-- "~l|<line>" -> the bundle); its lines are released, confirmed, expired together.
local function bundle_ids_of(mark)
  local ids = {}
  for id in string.gmatch(string.match(mark, '|(.*)$'), '[^,]+') do ids[#ids + 1] = id end
  return ids
end

local function bundle_line_ids(bundle_id)
  local b = redis.call('HGET', K.users, '~b|' .. bundle_id)
  return b and bundle_ids_of(b)
end

-- The lines of the bundle `claim_id` is a line of, or nil when it is a claim alone.
local function bundle_of_line(claim_id)
  local b = redis.call('HGET', K.users, '~l|' .. claim_id)
  return b and bundle_line_ids(b)
end

-- After release_hold of a line, the other lines of its bundle still held; returns
-- how many it released.
local function release_bundle_rest(now, claim_id, new_status, idem)
  local ids = bundle_of_line(claim_id)
  if not ids then return 0 end
  local released = 0
  for _, id in ipairs(ids) do
    local raw = id ~= claim_id and redis.call('HGET', K.claims, id)
    local c = raw and parse_claim(raw)
    if c and c.status == 'held' then
      release_hold(now, id, c, new_status, idem)
      released = released + 1
    end
  end
  return released
end

-- Expire up to `limit` holds whose deadline has passed: from the expiry list's
-- head (ids of claims no longer held are dropped as they are met; they count
-- against the limit, so a sweep stays bounded), then from the deadlines zset.
-- Returns the holds expired and the ids visited (at `limit`, more may be due).
-- A bundle lapses whole: its other lines go with the first one met.
local function expire_due_holds(now, limit)
  local expired, popped, chunk, due_yet = 0, 0, 1, true  -- read in doubling chunks: usually one id
  while due_yet and popped < limit do
    local ids = redis.call('LRANGE', K.expiry, popped, popped + math.min(chunk, limit - popped) - 1)
    if #ids == 0 then break end
    for _, claim_id in ipairs(ids) do
      local raw = redis.call('HGET', K.claims, claim_id)
      local c = raw and parse_claim(raw)
      if c and c.status == 'held' then
        if c.deadline > now then due_yet = false; break end
        release_hold(now, claim_id, c, 'expired')
        expired = expired + 1 + release_bundle_rest(now, claim_id, 'expired')
      end
      popped = popped + 1
    end
    chunk = chunk * 2
  end
  if popped > 0 then redis.call('LTRIM', K.expiry, popped, -1) end
  if popped >= limit then return expired, popped end
  local due = redis.call('ZRANGEBYSCORE', K.deadlines, '-inf', now, 'LIMIT', 0, limit - popped)
  for _, claim_id in ipairs(due) do
    local raw = redis.call('HGET', K.claims, claim_id)
    if raw then
      local c = parse_claim(raw)
      if c.status == 'held' then
        release_hold(now, claim_id, c, 'expired')
        expired = expired + 1 + release_bundle_rest(now, claim_id, 'expired')
      else
        redis.call('ZREM', K.deadlines, claim_id)
      end
    else
      redis.call('ZREM', K.deadlines, claim_id)
    end
  end
  return expired, popped + #due
end

-- The campaign as this script sees it, before anything else is read: CAMPAIGN_MISSING
-- (no state: lost or never defined; api.healing asks the store which), FENCED
-- (being rebuilt: what is missing may yet come back) or OK. Seen here, atomically
-- with the answer: a look after the script could see the campaign healed meanwhile.
local function campaign_present()
  local m = redis.call('HMGET', K.meta, 'state', 'fenced')
  if not m[1] then return CAMPAIGN_MISSING end
  if m[2] == '1' then return FENCED end
  return OK
end

-- Can new claims be taken now? Returns OK, or the refusal code and its
-- detail (no_campaign, not_a_sale, not_a_drop, or 'not_open:<opens_ms>:<wait_ms>').
-- A coupon drop (meta coupons=1) takes coupon claims only (`coupons` true),
-- and a sale takes sale claims only.
local function sale_gate(now, coupons)
  local m = redis.call('HMGET', K.meta, 'state', 'opens_ms', 'closes_ms', 'fenced', 'coupons')
  if not m[1] then return NOT_FOUND, 'no_campaign' end
  if (m[5] == '1') ~= (coupons == true) then
    return NOT_FOUND, coupons and 'not_a_drop' or 'not_a_sale'
  end
  if m[4] == '1' then return FENCED, '' end
  if m[1] == 'closed' or now >= tonumber(m[3]) then return CLOSED, '' end
  if m[1] == 'paused' then return PAUSED, '' end
  local opens = tonumber(m[2])
  if now < opens then return NOT_OPEN, 'not_open:' .. opens .. ':' .. (opens - now) end
  return OK, ''
end

-- The waiting room, brought up to `now` from server time alone (no ticker
-- can stall it): lapsed admissions leave (their slots return to the flow);
-- tokens accrue at the rate since the last advance unless admission is
-- paused; as many tickets as the tokens and the free active slots allow
-- are admitted, in queue order; and only what is left over is capped at
-- the burst. So the serving counter is what a perfect ticker would have
-- made it, however rarely anyone polls, and it never runs ahead of
-- rate x time + burst. Tokens are kept in thousandths.
-- Admissions and lapses are events (queue_admitted: the queue ranks
-- first..first+count-1 admitted until `until`, the bucket left; queue_lapsed),
-- so `stampede recover` rebuilds the room (durable/queue_recovery.py).
-- Returns the state, or nil if the campaign has no waiting room.
local function advance_queue(now)
  local m = redis.call('HMGET', K.meta, 'wr_on', 'opens_ms', 'wr_rate', 'wr_burst',
                       'wr_max_active', 'wr_window_ms', 'wr_paused', 'wr_served', 'wr_tokens',
                       'wr_at')
  if m[1] ~= '1' then return nil end
  local st = {opens = tonumber(m[2]), rate = tonumber(m[3]), burst = tonumber(m[4]),
              max_active = tonumber(m[5]), window = tonumber(m[6]), paused = m[7] == '1',
              served = tonumber(m[8]), tokens = tonumber(m[9]), at = tonumber(m[10]),
              active = 0}
  if now < st.opens then return st end  -- nobody is admitted before the opening
  local lapsed = redis.call('ZREMRANGEBYSCORE', K.admitted, '-inf', now)
  if lapsed > 0 then
    count('admission_lapsed', lapsed)
    emit(now, 'queue_lapsed', {'count', lapsed})
  end
  local from = math.max(st.at, st.opens)
  local accrued = false
  if now > from then
    if not st.paused then
      st.tokens = st.tokens + math.floor(st.rate * (now - from))
      accrued = true
    end
    st.at = now
  end
  st.active = redis.call('ZCARD', K.admitted)
  local n = 0
  if not st.paused then
    n = math.max(0, math.min(math.floor(st.tokens / 1000), st.max_active - st.active,
                             redis.call('ZCARD', K.queue) - st.served))
  end
  local leftover = math.min(st.burst * 1000, st.tokens - n * 1000)
  if n == 0 and (not accrued or leftover == st.tokens) then return st end
  st.tokens = leftover
  if n == 0 then  -- tokens capped: keep the cap, or a later advance would recount them
    redis.call('HSET', K.meta, 'wr_tokens', st.tokens, 'wr_at', st.at)
    return st
  end
  local users = redis.call('ZRANGE', K.queue, st.served, st.served + n - 1)
  for i = 1, #users, 500 do
    local args = {}
    for j = i, math.min(i + 499, #users) do
      args[#args + 1] = now + st.window
      args[#args + 1] = users[j]
    end
    redis.call('ZADD', K.admitted, unpack(args))
  end
  emit(now, 'queue_admitted', {'first', st.served, 'count', n, 'until', now + st.window,
                               'tokens', st.tokens, 'at', st.at})
  st.served, st.active = st.served + n, st.active + n
  count('admitted', n)
  redis.call('HSET', K.meta, 'wr_served', st.served, 'wr_tokens', st.tokens, 'wr_at', st.at)
  return st
end

-- The waiting room's gate, from meta 'wr_on': false (no waiting room); '1' this
-- key set runs the queue, its admitted zset holds the open turns (user -> window
-- end); 'pass' a sharded campaign's shard k >= 1 (docs/shards.md): shard 0 runs the
-- one queue, and a claim here shows its admission token as a pass (signed by the
-- service, bound to the campaign and user by the engine, and never valid past the
-- turn's window end). This shard's admitted zset then holds the turns used here
-- (user -> when), kept for the campaign's life: a user is admitted once, so a turn
-- is one claim whichever shard serves it.
local function room_mode(wr_on)
  if wr_on == '1' or wr_on == 'pass' then return wr_on end
  return false
end

-- May `user` claim now? `token_exp` is when the admission token they showed
-- expires (its signature and binding checked by the engine; -1 if none).
local function admitted(now, user, token_exp, mode)
  if token_exp <= now then return false end
  local window_end = redis.call('ZSCORE', K.admitted, user)
  if mode == 'pass' then return not window_end end  -- a turn not yet used here
  return window_end and tonumber(window_end) > now or false
end

-- The claim that passed `admitted` was held: its turn is used.
local function use_turn(now, user, mode)
  if mode == 'pass' then
    redis.call('ZADD', K.admitted, now, user)
  else
    redis.call('ZREM', K.admitted, user)
  end
end
