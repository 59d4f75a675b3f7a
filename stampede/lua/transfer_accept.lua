-- transfer_accept: a recipient takes a sold claim with its token; the claim is
-- re-issued in their name under a new id, so the giver's tickets die.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the transfers hash      KEYS[NKEYS + 2] the tickets hash
-- KEYS[NKEYS + 3] the refunds hash        KEYS[NKEYS + 4] the giver's ticket set
-- KEYS[NKEYS + 5] the recipient's ticket set
-- ARGV[1]     hash of the transfer token
-- ARGV[2]     the recipient
-- ARGV[3]     the giver, as the engine read the record (it picked KEYS[NKEYS + 4])
-- ARGV[4]     the recipient's identity (the credential's idh), or ''
-- Returns     {code, detail, new_claim_id} (CAMPAIGN_MISSING: no campaign state); details:
--             no_transfer, transfer_used,
--             transfer_expired, transfer_to_self, transfer_stale, transfer_checked_in,
--             per_user:<limit>:<held>, per_sku:<limit>:<held>, person_required,
--             per_person:<limit>:<held>
--
-- Accepting again by the same recipient answers the same new claim. The new
-- claim has the units not refunded (nor moved out one by one), the old one's
-- price, creation time and deadline; the old one becomes `transferred`. A
-- one-ticket transfer (the record's unit n > 0) gives the recipient a new claim
-- of that one unit; the old claim keeps its other tickets and stays confirmed,
-- and its ticket n is marked `moved` (its code dies: a scan is not_found). When the campaign's rule says
-- so (meta xf_limits), the recipient's per-user and per-SKU limits apply, and
-- in a per_person campaign their person's (an identity is then required).
-- The units leave the giver's counts (per-user, per-SKU, per-person) and join
-- the recipient's (their person's when they carry an identity).
-- Every check comes before the first write. Event: claim_transferred.
--@include common
--@include refund_records

local X, T, R = KEYS[NKEYS + 1], KEYS[NKEYS + 2], KEYS[NKEYS + 3]
local GIVER_SET, RECIPIENT_SET = KEYS[NKEYS + 4], KEYS[NKEYS + 5]
local token, recipient = ARGV[1], ARGV[2]
local present = campaign_present()
if present ~= OK then return {present, present == FENCED and 'fenced' or '', ''} end
local raw = redis.call('HGET', X, token)
if not raw then return {NOT_FOUND, 'no_transfer', ''} end
local x = parse_transfer(raw)
if x.status == 'accepted' then
  if x.recipient == recipient then return {OK, '', x.new_claim} end
  return {CONFLICT, 'transfer_used', ''}
end
if x.giver ~= ARGV[3] then return {CONFLICT, 'transfer_stale', ''} end
local now = now_ms()
if now >= x.expires then return {CONFLICT, 'transfer_expired', ''} end
if recipient == x.giver then return {CONFLICT, 'transfer_to_self', ''} end
local m = redis.call('HMGET', K.meta, 'fenced', 'xf_limits', 'per_user', 'tk_on', 'id', 'salt',
                    'per_person')
if m[1] == '1' then return {FENCED, 'fenced', ''} end
local craw = redis.call('HGET', K.claims, x.claim)
local c = craw and parse_claim(craw)
if not c or c.user ~= x.giver or c.status ~= 'confirmed' then
  return {CONFLICT, 'transfer_stale', ''}
end
local left
if x.unit > 0 then  -- one ticket: still valid
  local t = redis.call('HGET', T, x.claim .. '-' .. x.unit)
  if t and parse_ticket(t).status == 'in' then return {CONFLICT, 'transfer_checked_in', ''} end
  if t then return {CONFLICT, 'transfer_stale', ''} end
  left = 1
else
  local moved = 0
  for i = 1, c.qty do
    local t = redis.call('HGET', T, x.claim .. '-' .. i)
    local st = t and parse_ticket(t).status
    if st == 'in' then return {CONFLICT, 'transfer_checked_in', ''} end
    if st == 'moved' then moved = moved + 1 end
  end
  local rraw = redis.call('HGET', R, x.claim)
  left = c.qty - (rraw and parse_refund(rraw).units or 0) - moved
  if left < 1 then return {CONFLICT, 'transfer_stale', ''} end
end
if m[2] == '1' then
  local total, by = units_of(recipient)
  local per_sku = by[c.sku] or 0
  local per_user = tonumber(m[3] or '-1')
  local sku_lim = tonumber(redis.call('HGET', K.stock, c.sku .. '.lim') or '-1')
  if per_user >= 0 and total + left > per_user then
    return {LIMIT_EXCEEDED, 'per_user:' .. per_user .. ':' .. total, ''}
  end
  if sku_lim >= 0 and per_sku + left > sku_lim then
    return {LIMIT_EXCEEDED, 'per_sku:' .. sku_lim .. ':' .. per_sku, ''}
  end
end
-- presales' real-name limit: the recipient's person, per the same rule
local per_person, identity = tonumber(m[7] or '-1'), ARGV[4] or ''
if per_person >= 0 and m[2] == '1' then
  if identity == '' then return {LIMIT_EXCEEDED, 'person_required', ''} end
  local by_person = tonumber(redis.call('HGET', K.users, '~p|' .. identity) or '0')
  if c.person == identity then by_person = by_person - left end  -- the same person
  if by_person + left > per_person then
    return {LIMIT_EXCEEDED, 'per_person:' .. per_person .. ':' .. by_person, ''}
  end
end

local new_id = m[5] .. '.' .. string.sub(redis.sha1hex(m[6] .. '|transfer|' .. token), 1, 20)
local giver = c.user
if x.unit > 0 then
  redis.call('HSET', T, x.claim .. '-' .. x.unit,
             format_ticket({status = 'moved', gate = '', at = now, scanner = ''}))
else
  c.status = 'transferred'
  redis.call('HSET', K.claims, x.claim, format_claim(c))
  redis.call('SREM', GIVER_SET, x.claim)
end
local new_person = (per_person >= 0 and identity ~= '') and identity or ''
redis.call('HSET', K.claims, new_id, format_claim({status = 'confirmed', user = recipient,
  sku = c.sku, qty = left, deadline = c.deadline, price = c.price, created = c.created,
  person = new_person}))
units_add(giver, c.sku, -left)
units_add(recipient, c.sku, left)
if c.person ~= '' then redis.call('HINCRBY', K.users, '~p|' .. c.person, -left) end
if new_person ~= '' then redis.call('HINCRBY', K.users, '~p|' .. new_person, left) end
if m[4] == '1' then redis.call('SADD', RECIPIENT_SET, new_id) end
x.status, x.recipient, x.new_claim = 'accepted', recipient, new_id
redis.call('HSET', X, token, format_transfer(x))
count('transfers')
emit(now, 'claim_transferred', {'claim', x.claim, 'new_claim', new_id, 'from', giver,
                                'user', recipient, 'sku', c.sku, 'qty', left,
                                'price', c.price, 'created', c.created,
                                'deadline', c.deadline, 'token', token, 'ticket', x.unit,
                                'identity', per_person >= 0 and identity or ''})
return {OK, '', new_id}
