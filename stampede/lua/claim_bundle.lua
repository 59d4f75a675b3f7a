-- claim_bundle: place bundle holds (several SKUs per claim, all or nothing) for a
-- batch of bundle claims in one round trip (stampede/domain/bundles.py).
--
-- KEYS        as claim_batch.lua: the campaign key set, the guard's campaign-wide
--             keys, the presale keys, then per-claim keys (idempotency, guard, codes)
-- ARGV[1]     how long to remember an idempotent answer, in ms
-- ARGV[2]     sweep limit: expired holds to release before claiming
-- ARGV[3]     the batch's bundle claims, one msgpack array of bundle_arg
--             (stampede/state/records.py BundleArg: the claim's context as a
--             claim_arg, the spec bundle's name or '', the lines of a claim of lines)
-- Returns     a flat array, seven per claim: code, claim_id (or a refusal's detail,
--             as claim_batch.lua's, plus no_bundle), deadline_ms, price (the lines'
--             sum: price times qty of each), created_ms, the lines "sku:qty:price"
--             (unit price) ','-joined, and the refused line's number (1-based; 0 none); then
--             one last element as claim_batch.lua's (the guard flag).
--
-- Each line is checked as a claim of its SKU would be (the per-user limit
-- counts every line, the per-SKU and per-person limits and allocations each
-- line's, stock each line's, its price step decided for it), the claimant's
-- guard, code, phase and waiting-room turn once, and every check comes before
-- the first write: a bundle is held whole or not at all. Each line becomes a
-- claim of its own ("<campaign>.<sha1 of bundle id and line number>"), placed as
-- claim_batch places a hold (include/holds.lua: the user's one units field, the
-- record's person and alloc, the expiry list, written once at the batch's end); the
-- users hash links the bundle and its lines ("~b|", "~l|"). The whole bundle is ONE
-- event, bundle_held: its lines' ids (`lines`) and, in line order, each line's sku,
-- qty, locked price and allocation take (`items`, records.py BundleLineRecord), with
-- the person, channel and presale code they share (stores of older versions hold a
-- claim_held per line before it, and no `items`: durable/events.py reads both).
--@include common
--@include gcra
--@include guard
--@include phases
--@include presale_codes
--@include allocations
--@include holds
--@include bundle_records

-- A line's hold, placed as hold_new places a claim's (its units, record, expiry) with
-- no event of its own: the bundle's bundle_held carries it. Returns what the line
-- took from allocations ('' none).
local function hold_line(claim_id, c, person, take)
  c.status, c.person, c.alloc = 'held', person, ''
  if take then c.alloc = allocation_spend(take) end
  hold_place(claim_id, c)
  return c.alloc
end

local now = now_ms()
release_due_waves(now)
expire_due_holds(now, tonumber(ARGV[2]))

local gate, gate_detail = sale_gate(now)
local meta = redis.call('HMGET', K.meta, 'per_user', 'hold_ttl_ms', 'max_qty', 'wr_on', 'ph',
                        'per_person', 'al', 'bd', 'id')
local per_user = tonumber(meta[1] or '-1')
local max_qty = tonumber(meta[3] or '1')
local waiting_room = room_mode(meta[4])
local phases = parse_phases(meta[5])
local per_person = tonumber(meta[6] or '-1')
local allocated = meta[7] == '1'
local campaign_id = meta[9] or ''
local waitlists = redis.call('EXISTS', K.waitlist) == 1
local guard_cfg = load_guard_config(NKEYS + 1)
local P = presale_keys_at(NKEYS + NGKEYS + 1)
local deadline = now + tonumber(meta[2] or '0')  -- every line's, as text once (claim_batch)
local deadline_s, now_s = tostring(deadline), tostring(now)
local remember = remembering(tonumber(ARGV[1]))
local placed = {}  -- bundle id -> its lines: the batch's bundles placed before (a retry) or now

-- The spec's bundles: name -> its lines {sku, qty}.
local spec_bundles = {}
for part in string.gmatch(meta[8] or '', '[^;]+') do
  local name, body = string.match(part, '^([^=]+)=(.*)$')
  local lines = {}
  for sku, qty in string.gmatch(body, '([^:,]+):(%d+)') do
    lines[#lines + 1] = {sku = sku, qty = tonumber(qty)}
  end
  spec_bundles[name] = lines
end

local stock_of, flush_stock = stock_cache(now, waitlists, allocated)
local tally = {}
local function tally_one(field, n) tally[field] = (tally[field] or 0) + (n or 1) end

local out = {}
local function answer(code, claim_id, deadline, price, created, prices, line)
  out[#out + 1] = code
  out[#out + 1] = claim_id or ''
  out[#out + 1] = deadline or ''
  out[#out + 1] = price or ''
  out[#out + 1] = created or ''
  out[#out + 1] = prices or ''
  out[#out + 1] = line or 0
end

-- An existing bundle's answer again (a retry): its lines' prices from their records.
-- `ids` its lines (bundle_line_ids), nil when no such bundle was placed.
local function answer_existing(bundle_id, ids, code, deadline_ms, total, created)
  if not ids then return false end
  local prices, sum, first = {}, 0, nil
  for i, id in ipairs(ids) do
    local c = parse_claim(hold_known(id) or redis.call('HGET', K.claims, id))
    first = first or c
    prices[i] = c.sku .. ':' .. c.qty .. ':' .. c.price
    sum = sum + c.price * c.qty
  end
  answer(code or OK, bundle_id, deadline_ms or first.deadline, total or sum,
         created or first.created, table.concat(prices, ','))
  return true
end

local function claim_one(b)
  local a = b.claim
  local claim_id, user, slot, fingerprint = a.claim_id, a.user, a.idem_slot, a.fingerprint
  local tiers, code, identity, channel = a.tiers or {}, a.code or '', a.identity or '',
                                         a.channel or ''
  if slot > 0 then
    local prior = redis.call('GET', KEYS[slot])
    if prior then
      local p = parse_claim_answer(prior)
      if p.fingerprint ~= fingerprint then return answer(IDEMPOTENCY_MISMATCH) end
      local ids = p.code == OK and (placed[p.claim_id] or bundle_line_ids(p.claim_id))
      if ids and answer_existing(p.claim_id, ids, p.code, p.deadline, p.price, p.created) then
        return
      end
      return answer(p.code, p.claim_id, p.deadline, p.price, p.created)
    end
  end
  if answer_existing(claim_id, placed[claim_id]) then return end
  local g = guard_cfg and guard_context(user, a.guard)
  if guard_cfg and not g then return answer(GUARD_CONTEXT_NEEDED) end
  if guard_cfg then
    local verdict = guard(guard_cfg, g, now)
    if verdict ~= OK then return answer(verdict[1], verdict[2], verdict[3]) end
  end
  if gate ~= OK and not (gate == NOT_OPEN and phases) then return answer(gate, gate_detail) end
  local lines = b.lines
  if b.name ~= '' then
    lines = spec_bundles[b.name]
    if not lines then return answer(NOT_FOUND, 'no_bundle') end
  end
  local code_batch = nil
  if code ~= '' then
    local cb, refused = presale_code_check(P, user, code, code_limiters(a), now)
    if not cb then
      tally_one(refused[1] == THROTTLED and 'code_throttled' or string.match(refused[2], '^[a-z_]+'))
      return answer(refused[1], refused[2], refused[3])
    end
    code_batch = cb
    local lent = {cb.tier}
    for _, t in ipairs(tiers) do lent[#lent + 1] = t end
    tiers = lent
  end
  local refused, why = phase_refusal(phases, tiers, user, P.segments, now, tally_one)
  if refused then return answer(refused, why) end
  if waiting_room and not admitted(now, user, a.admission, waiting_room) then
    return answer(ADMISSION_REQUIRED)
  end
  -- Every line checked, nothing written yet: first its shape, then the limits and stock
  -- (what the batch's users and persons hold was read in holds_begin).
  if per_person >= 0 and identity == '' then return answer(LIMIT_EXCEEDED, 'person_required') end
  local seen = {}
  for i, line in ipairs(lines) do
    if seen[line.sku] then return answer(INVALID, 'line_twice', nil, nil, nil, nil, i) end
    seen[line.sku] = true
    if not stock_of(line.sku) then return answer(NOT_FOUND, 'no_sku', nil, nil, nil, nil, i) end
    if line.qty < 1 then return answer(INVALID, 'bad_qty', nil, nil, nil, nil, i) end
    if line.qty > max_qty then
      return answer(INVALID, 'max_per_claim:' .. max_qty, nil, nil, nil, nil, i)
    end
  end
  local by_person = per_person >= 0 and hold_person(identity) or 0
  local units, plan = 0, {}
  for i, line in ipairs(lines) do
    local s = stock_of(line.sku)
    units = units + line.qty
    local held_total, held_sku = hold_units(user, line.sku)
    local over = nil
    if per_user >= 0 and held_total + units > per_user then
      over = 'per_user:' .. per_user .. ':' .. held_total
    elseif s.lim >= 0 and held_sku + line.qty > s.lim then
      over = 'per_sku:' .. s.lim .. ':' .. held_sku
    elseif per_person >= 0 and by_person + units > per_person then
      over = 'per_person:' .. per_person .. ':' .. by_person
    end
    if over then
      tally_one('limit_exceeded')
      remember(slot, fingerprint, LIMIT_EXCEEDED, over)
      return answer(LIMIT_EXCEEDED, over, nil, nil, nil, nil, i)
    end
    local take = nil
    if s.allocs then take = allocation_take(s.allocs, s.a, line.qty, channel, tiers) end
    if s.a < line.qty or s.waiting or (s.allocs and not take) then
      tally_one('sold_out')
      remember(slot, fingerprint, SOLD_OUT)
      return answer(SOLD_OUT, '', nil, nil, nil, nil, i)
    end
    plan[i] = {s = s, take = take}
  end
  -- All checks passed: every line placed as a hold of its own (hold_place: the user's
  -- and person's units, its record with person and alloc, its expiry), each at the
  -- price decided now.
  local ids, prices, items, total, taken = {}, {}, {}, 0, false
  local person = per_person >= 0 and identity or ''
  for i, line in ipairs(lines) do
    local s, take = plan[i].s, plan[i].take
    local id = campaign_id .. '.' .. string.sub(redis.sha1hex(claim_id .. '#' .. i), 1, 20)
    local price = s.price
    if s.steps then price = step_price(s.steps, s.price, s.h + s.sold + line.qty, tiers, now) end
    s.a, s.h, s.dirty = s.a - line.qty, s.h + line.qty, true
    local alloc = hold_line(id, {user = user, sku = line.sku, qty = line.qty,
                            deadline = deadline_s, price = price, created = now_s}, person, take)
    taken = taken or take ~= nil
    hold_mark('~l|' .. id, claim_id)
    ids[i], total = id, total + price * line.qty
    prices[i] = line.sku .. ':' .. line.qty .. ':' .. price
    items[i] = format_bundle_line({sku = line.sku, qty = line.qty, price = price, alloc = alloc})
  end
  local lines_s = table.concat(ids, ',')
  hold_mark('~b|' .. claim_id, b.name .. '|' .. lines_s)
  placed[claim_id] = ids  -- (its links are written at the batch's end)
  tally_one('held', #lines)  -- holds, as a claim of each line would count
  tally_one('bundles')
  if waiting_room then use_turn(now, user, waiting_room) end
  -- the code's use rides on the first line: its release gives the use back once
  if code_batch then presale_code_spend(P, user, code, code_batch, ids[1]) end
  local whole = {'claim', claim_id, 'user', user, 'bundle', b.name, 'lines', lines_s,
                 'price', total, 'deadline', deadline_s,
                 'items', table.concat(items, BUNDLE_ITEMS_SEP)}
  if person ~= '' then whole[#whole + 1] = 'identity'; whole[#whole + 1] = person end
  if taken then whole[#whole + 1] = 'channel'; whole[#whole + 1] = channel end
  -- one use of the code for the whole bundle: its first line's
  if code_batch then whole[#whole + 1] = 'code'; whole[#whole + 1] = code end
  if slot > 0 then
    whole[#whole + 1] = 'idem'; whole[#whole + 1] = KEYS[slot]
    whole[#whole + 1] = 'fp'; whole[#whole + 1] = fingerprint
  end
  emit(now_s, 'bundle_held', whole)
  remember(slot, fingerprint, OK, claim_id, deadline_s, total, now_s)
  return answer(OK, claim_id, deadline, total, now, table.concat(prices, ','))
end

local batch, users, persons, marks = {}, {}, {}, {}
for i, a in ipairs(cmsgpack.unpack(ARGV[3])) do
  local b = bundle_arg_from(a)
  batch[i], users[i], marks[i] = b, b.claim.user, '~b|' .. b.claim.claim_id
  if per_person >= 0 and b.claim.identity and b.claim.identity ~= '' then
    persons[#persons + 1] = b.claim.identity
  end
end
-- The bundle ids are no claim records (their lines are): a retried batch finds its
-- bundles by their links, read at once.
for i, raw in ipairs(hmget_chunked(K.users, marks)) do
  if raw then placed[batch[i].claim.claim_id] = bundle_ids_of(raw) end
end
holds_begin({}, users, persons)
for _, b in ipairs(batch) do claim_one(b) end
flush_stock()
guard_flush(now)
holds_flush()  -- users' units, the lines' records, expiry, the event sequence
for field, n in pairs(tally) do count(field, n) end
out[#out + 1] = guard_cfg and (guard_cfg.recent_window_ms or 1) or 0
return out
