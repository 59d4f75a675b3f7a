-- claim_batch: place holds for a batch of claims in one round trip.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NKEYS + NGKEYS] the guard's campaign-wide keys (limiter,
--             lists, state: include/guard.lua)
-- KEYS[NKEYS + NGKEYS + 1..+ 3] the presale keys (pbatches, pcodes, segments: P)
-- KEYS[..]    per-claim keys: idempotency keys, code-attempt limiters, and the
--             guard's challenge-nonce keys (include/guard.lua)
-- ARGV[1]     how long to remember an idempotent answer, in ms
-- ARGV[2]     sweep limit: expired holds to release before claiming
-- ARGV[3]     the batch's claims, one msgpack array of claim_arg
--             (stampede/state/records.py ClaimArg: claim_id, user, sku, qty,
--             idem_slot, admission, fingerprint, tiers, code, k_code,
--             k_code_device, k_code_network, identity, channel, guard);
--             idem_slot is the
--             KEYS index of its idempotency key, 0 if none; admission the
--             expiry (ms) of the admission token the engine verified, -1 if
--             none; guard the claim's guard context (GuardArg), which the
--             engine leaves out for a campaign unguarded at its last reply:
--             such a claim of a guarded campaign is answered GUARD_CONTEXT_NEEDED,
--             unchanged,
--             to be sent again; tiers the audience tiers of the claimant's
--             credential, read only when the campaign has access phases; code
--             a presale code's id ('?' not genuine, '' none) and k_code,
--             k_code_device, k_code_network the KEYS slots of its code-attempt
--             limiters (include/presale_codes.lua); identity the
--             claimant's hashed real person ('' none), read only when the
--             campaign has a per_person limit; channel the credential's sales
--             channel ('' none), read only for a SKU with allocations.
-- ARGV[4]     '1': a shard of a sharded campaign answers SHARD_DRY (internal, not
--             remembered) for a claim its own stock cannot serve, so the engine
--             can borrow units from the other shards first; absent: SOLD_OUT
-- ARGV[5]     '1': the claims were sent before and passed the guard then (a
--             sharded campaign's claim sent again after a borrow): the guard is
--             skipped, so one claim is charged to the limiters once
-- Returns     a flat array, five per claim: code, claim_id, deadline_ms, price,
--             created_ms (code is an outcome; the rest are '' unless OK; a
--             refusal may put its detail "reason[:value[:value]]" in place of
--             claim_id: no_campaign, not_a_sale, no_sku, bad_qty,
--             'not_open:<opens_ms>:<wait_ms>', 'max_per_claim:<max>',
--             'phase_not_open:<opens_ms>:<wait_ms>' (when the claimant's access
--             phase opens), not_eligible (no phase admits them), code_invalid,
--             code_bound, 'code_used:<uses>' (presale codes; a code attempt
--             over its limiter is THROTTLED, scope presale_code),
--             'per_user:<limit>:<held>', 'per_sku:<limit>:<held>',
--             'per_person:<limit>:<held>', person_required), then
--             one last element: 0 if the campaign is unguarded, else 1, or the
--             window (ms) of its recent_campaigns signal when a rule reads it.
--             A guard refusal answers code, detail, value: THROTTLED with
--             the limit's scope and the exact retry-after in ms, BLOCKED with
--             why, CHALLENGE_REQUIRED with why and the difficulty in bits.
--
-- The guard runs for each claim after its replay checks and before its
-- first write: a refused claim writes only its limiter state, and the
-- batch's refusals are recorded in one `requests_refused` event.
--
-- Every claim is checked fully before its first write. A claim_id that
-- already exists means the batch is a retry of a lost reply (redis-py
-- retries on connection errors): its first answer is returned again.
--@include common
--@include gcra
--@include guard
--@include phases
--@include presale_codes
--@include allocations
--@include holds

local dry_is_internal = ARGV[4] == '1'  -- sharded campaigns: borrow before refusing
local guard_passed = ARGV[5] == '1'  -- sent again after a borrow: charged once already
local now = now_ms()
release_due_waves(now)
expire_due_holds(now, tonumber(ARGV[2]))

local gate, gate_detail = sale_gate(now)
local meta = redis.call('HMGET', K.meta, 'per_user', 'hold_ttl_ms', 'max_qty', 'wr_on', 'ph',
                        'per_person', 'al')
local per_user = tonumber(meta[1] or '-1')
local max_qty = tonumber(meta[3] or '1')
local waiting_room = room_mode(meta[4])
local phases = parse_phases(meta[5])  -- nil for a campaign without presale phases
local per_person = tonumber(meta[6] or '-1')  -- presales: real-name units per person
local allocated = meta[7] == '1'  -- presales: some SKU's stock is split into allocations
local waitlists = redis.call('EXISTS', K.waitlist) == 1
local guard_cfg = load_guard_config(NKEYS + 1)
local guard_run = guard_cfg and not guard_passed  -- the config is read either way (flag)
local P = presale_keys_at(NKEYS + NGKEYS + 1)
-- Every hold of the batch shares its deadline and creation time: as text once (a
-- number becomes text at some cost, in each record and event that names it).
local deadline = now + tonumber(meta[2] or '0')
local deadline_s, now_s = tostring(deadline), tostring(now)

-- Stock of the SKUs this batch touches, read once and written once at the end.
local stock_of, flush_stock = stock_cache(now, waitlists, allocated)
local remember = remembering(tonumber(ARGV[1]))
local tally = {}
local function tally_one(field) tally[field] = (tally[field] or 0) + 1 end

local out, n_out = {}, 0
local function answer(code, claim_id, deadline_ms, price, created)
  out[n_out + 1], out[n_out + 2], out[n_out + 3] = code, claim_id or '', deadline_ms or ''
  out[n_out + 4], out[n_out + 5] = price or '', created or ''
  n_out = n_out + 5
end

local function claim_one(claim_id, user, sku, qty, slot, admission, fingerprint, g, tiers,
                         code, code_keys, identity, channel)
  if slot > 0 then
    local prior = redis.call('GET', KEYS[slot])
    if prior then
      local p = parse_claim_answer(prior)
      if p.fingerprint ~= fingerprint then return answer(IDEMPOTENCY_MISMATCH) end
      return answer(p.code, p.claim_id, p.deadline, p.price, p.created)
    end
  end
  local existing = hold_known(claim_id)
  if existing then
    local c = parse_claim(existing)
    return answer(OK, claim_id, c.deadline, c.price, c.created)
  end
  if guard_run and not g then return answer(GUARD_CONTEXT_NEEDED) end  -- guarded since
  if guard_run then
    local verdict = guard(guard_cfg, g, now)
    if verdict ~= OK then return answer(verdict[1], verdict[2], verdict[3]) end
  end
  -- Refusals by state are "try later" answers, not remembered.
  -- Before the opening, a phased campaign answers with the claimant's own opening.
  if gate ~= OK and not (gate == NOT_OPEN and phases) then return answer(gate, gate_detail) end
  local code_batch = nil  -- the batch of a presale code that passed its checks
  if code ~= '' then
    local b, refused = presale_code_check(P, user, code, code_keys, now)
    if not b then
      tally_one(refused[1] == THROTTLED and 'code_throttled' or string.match(refused[2], '^[a-z_]+'))
      return answer(refused[1], refused[2], refused[3])
    end
    code_batch = b
    local lent = {b.tier}  -- the code lends its batch's tier to this claim
    for _, t in ipairs(tiers or {}) do lent[#lent + 1] = t end
    tiers = lent
  end
  local refused, why = phase_refusal(phases, tiers or {}, user, P.segments, now, tally_one)
  if refused then return answer(refused, why) end
  if waiting_room and not admitted(now, user, admission, waiting_room) then
    return answer(ADMISSION_REQUIRED)
  end
  local s = stock_of(sku)
  if not s then return answer(NOT_FOUND, 'no_sku') end
  if qty < 1 then return answer(INVALID, 'bad_qty') end
  if qty > max_qty then return answer(INVALID, 'max_per_claim:' .. max_qty) end
  local held_total, held_sku = hold_units(user, sku)
  local over = nil  -- the limit that refuses, named with its numbers
  if per_user >= 0 and held_total + qty > per_user then
    over = 'per_user:' .. per_user .. ':' .. held_total
  elseif s.lim >= 0 and held_sku + qty > s.lim then
    over = 'per_sku:' .. s.lim .. ':' .. held_sku
  elseif per_person >= 0 then  -- counted across the person's accounts
    if identity == '' then return answer(LIMIT_EXCEEDED, 'person_required') end
    local by_person = hold_person(identity)
    if by_person + qty > per_person then over = 'per_person:' .. per_person .. ':' .. by_person end
  end
  if over then
    tally_one('limit_exceeded')
    remember(slot, fingerprint, LIMIT_EXCEEDED, over)
    return answer(LIMIT_EXCEEDED, over)
  end
  local take = nil  -- what the claim takes from allocations (presales)
  if s.allocs then take = allocation_take(s.allocs, s.a, qty, channel, tiers or {}) end
  if dry_is_internal and s.a < qty then return answer(SHARD_DRY) end
  if s.a < qty or s.waiting or (s.allocs and not take) then  -- (waitlist first)
    tally_one('sold_out')
    remember(slot, fingerprint, SOLD_OUT)
    return answer(SOLD_OUT)
  end
  -- All checks passed: write, at the price decided now and locked into the hold.
  local price = s.price
  if s.steps then price = step_price(s.steps, s.price, s.h + s.sold + qty, tiers or {}, now) end
  s.a, s.h, s.dirty = s.a - qty, s.h + qty, true
  tally_one('held')
  if waiting_room then use_turn(now, user, waiting_room) end
  -- the record keeps what release_hold gives back: the person's units, the allocations'
  hold_new(now_s, claim_id, {user = user, sku = sku, qty = qty, deadline = deadline_s,
           price = price, created = now_s}, per_person >= 0 and identity or '', take, channel,
           '', code_batch and code or '', slot, fingerprint)
  if code_batch then presale_code_spend(P, user, code, code_batch, claim_id) end
  remember(slot, fingerprint, OK, claim_id, deadline_s, price, now_s)
  return answer(OK, claim_id, deadline, price, now)
end

local batch = {}
local ids, users, persons = {}, {}, {}
for i, a in ipairs(cmsgpack.unpack(ARGV[3])) do
  local c = claim_arg_from(a)
  batch[i], ids[i], users[i] = c, c.claim_id, c.user
  if per_person >= 0 and c.identity and c.identity ~= '' then persons[#persons + 1] = c.identity end
end
holds_begin(ids, users, persons)
if guard_run then guard_prefetch_batch(guard_cfg, batch) end
for _, c in ipairs(batch) do
  claim_one(c.claim_id, c.user, c.sku, c.qty, c.idem_slot, c.admission, c.fingerprint,
            guard_run and c.guard, c.tiers, c.code or '',
            c.code and c.code ~= '' and code_limiters(c),
            c.identity or '', c.channel or '')
end
flush_stock()
guard_flush(now)  -- the campaign limiter, refusal counts, one requests_refused event
holds_flush()  -- users' units, claim records, expiry, the event sequence
for field, n in pairs(tally) do count(field, n) end
out[#out + 1] = guard_cfg and (guard_cfg.recent_window_ms or 1) or 0
return out
