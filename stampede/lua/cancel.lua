-- cancel: the user gives a hold back; its units return once (to the waitlist first).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     claim_id
-- ARGV[2]     user id of the caller (another user's claim is NOT_FOUND)
-- ARGV[3]     the caller's Idempotency-Key, or '' (kept in the event, for recovery)
-- Returns     {code, status, deadline_ms}; NOT_FOUND's status is 'no_campaign'
--             when the campaign itself is missing (api.healing asks the store)
--
-- Cancelling a cancelled claim answers OK again (a retried cancel); a
-- confirmed one is a CONFLICT; a lapsed hold is expired and HOLD_EXPIRED.
--@include common

local now = now_ms()
release_due_waves(now)
-- The campaign first: a claim missing from a campaign that is missing (its keys
-- lost) or fenced (being rebuilt) may yet come back, so it is not NOT_FOUND.
-- Seen here, atomically: a look after the script could see the campaign rebuilt.
local m = redis.call('HMGET', K.meta, 'state', 'fenced')
if not m[1] then return {NOT_FOUND, 'no_campaign', ''} end
if m[2] == '1' then return {FENCED, '', ''} end
local raw = redis.call('HGET', K.claims, ARGV[1])
if not raw then return {NOT_FOUND, '', ''} end
local c = parse_claim(raw)
if c.user ~= ARGV[2] then return {NOT_FOUND, '', ''} end
if c.status == 'cancelled' then return {OK, c.status, c.deadline} end
if c.status == 'expired' then return {HOLD_EXPIRED, c.status, c.deadline} end
if c.status ~= 'held' then return {CONFLICT, c.status, c.deadline} end
if now >= c.deadline then
  release_hold(now, ARGV[1], c, 'expired')
  return {HOLD_EXPIRED, c.status, c.deadline}
end
release_hold(now, ARGV[1], c, 'cancelled', ARGV[3])
return {OK, c.status, c.deadline}
