-- cancel: the user gives a hold back; its units return once (to the waitlist first).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     claim_id
-- ARGV[2]     user id of the caller (another user's claim is NOT_FOUND)
-- ARGV[3]     the caller's Idempotency-Key, or '' (kept in the event, for recovery)
-- Returns     {code, status, deadline_ms}
--
-- Cancelling a cancelled claim answers OK again (a retried cancel); a
-- confirmed one is a CONFLICT; a lapsed hold is expired and HOLD_EXPIRED.
--@include common

local now = now_ms()
release_due_waves(now)
local raw = redis.call('HGET', K.claims, ARGV[1])
if not raw then return {NOT_FOUND, '', ''} end
local c = parse_claim(raw)
if c.user ~= ARGV[2] then return {NOT_FOUND, '', ''} end
if redis.call('HGET', K.meta, 'fenced') == '1' then return {FENCED, c.status, c.deadline} end
if c.status == 'cancelled' then return {OK, c.status, c.deadline} end
if c.status == 'expired' then return {HOLD_EXPIRED, c.status, c.deadline} end
if c.status ~= 'held' then return {CONFLICT, c.status, c.deadline} end
if now >= c.deadline then
  release_hold(now, ARGV[1], c, 'expired')
  return {HOLD_EXPIRED, c.status, c.deadline}
end
release_hold(now, ARGV[1], c, 'cancelled', ARGV[3])
return {OK, c.status, c.deadline}
