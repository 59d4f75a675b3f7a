-- cancel: the user gives a hold back; its units return once (to the waitlist first).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     claim_id (a bundle's, or one of its lines': every line is cancelled)
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
-- A bundle is cancelled by its id or any line's: every line together (bundles).
local claim_id = ARGV[1]
local raw = redis.call('HGET', K.claims, claim_id)
if not raw then
  local lines = bundle_line_ids(claim_id)
  if not lines then return {NOT_FOUND, '', ''} end
  claim_id = lines[1]
  raw = redis.call('HGET', K.claims, claim_id)
end
local c = parse_claim(raw)
if c.user ~= ARGV[2] then return {NOT_FOUND, '', ''} end
if c.status == 'cancelled' then return {OK, c.status, c.deadline} end
if c.status == 'expired' then return {HOLD_EXPIRED, c.status, c.deadline} end
if c.status ~= 'held' then return {CONFLICT, c.status, c.deadline} end
if now >= c.deadline then
  release_hold(now, claim_id, c, 'expired')
  release_bundle_rest(now, claim_id, 'expired')
  return {HOLD_EXPIRED, c.status, c.deadline}
end
release_hold(now, claim_id, c, 'cancelled', ARGV[3])
release_bundle_rest(now, claim_id, 'cancelled', ARGV[3])
return {OK, c.status, c.deadline}
