-- queue_ticket: take a waiting-room ticket (one per user), or poll the one you have.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     user id
-- ARGV[2]     1 to take a ticket if the user has none, 0 only to poll
-- ARGV[3]     a lottery draw in [0,1) made by the engine: the place of a
--             ticket taken before the opening (random order among early
--             arrivals); later tickets are 1 + their arrival number, so
--             they queue in order behind every early one
-- Returns     {code, created, status, position, serving, tokens (thousandths),
--             rate, paused, early, early_count, opens_ms, now_ms, window_end_ms,
--             token_ttl_ms, active}
--             status: waiting | admitted | done (the turn has passed: used by
--             a claim or lapsed); position 0 while the lottery is not drawn
--
-- A new ticket is a queue_ticket_issued event (its place as ZADD took it); the
-- serving state is advanced after it (include/common.lua advance_queue), which
-- may admit it at once (queue_admitted).
-- Refusals: CAMPAIGN_MISSING (no campaign state), FENCED, NOT_FOUND (no waiting
-- room, or polling without a ticket), CLOSED.
--@include common

local user = ARGV[1]
local present = campaign_present()
if present ~= OK then return {present} end
local now = now_ms()
local m = redis.call('HMGET', K.meta, 'wr_on', 'state', 'closes_ms', 'wr_token_ttl_ms')
if m[1] ~= '1' then return {NOT_FOUND} end
local score = redis.call('ZSCORE', K.queue, user)
local created = 0
if not score then
  if ARGV[2] ~= '1' then return {NOT_FOUND} end
  if m[2] == 'closed' or now >= tonumber(m[3]) then return {CLOSED} end
  if now < tonumber(redis.call('HGET', K.meta, 'opens_ms')) then
    score = ARGV[3]
  else
    score = 1 + redis.call('HINCRBY', K.meta, 'wr_seq', 1)
  end
  redis.call('ZADD', K.queue, score, user)
  created = 1
  -- the ticket and its place, for recovery (durable/queue_recovery.py)
  emit(now, 'queue_ticket_issued', {'user', user, 'place', tostring(score)})
end
local st = advance_queue(now)
local early = tonumber(score) < 1
local status, position, window_end = 'waiting', 0, 0
local early_count = 0
if now < st.opens then
  early_count = redis.call('ZCARD', K.queue)
else
  position = redis.call('ZRANK', K.queue, user) + 1
  if position <= st.served then
    window_end = tonumber(redis.call('ZSCORE', K.admitted, user) or '0')
    status = window_end > now and 'admitted' or 'done'
  end
end
return {OK, created, status, position, st.served, tostring(st.tokens), tostring(st.rate),
        st.paused and 1 or 0, early and 1 or 0, early_count, st.opens, now, window_end,
        tonumber(m[4]), st.active}
