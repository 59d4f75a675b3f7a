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
-- Returns     {code, detail, new_claim_id} (CAMPAIGN_MISSING: no campaign state); details:
--             no_transfer, transfer_used,
--             transfer_expired, transfer_to_self, transfer_stale, transfer_checked_in,
--             per_user:<limit>:<held>, per_sku:<limit>:<held>
--
-- Accepting again by the same recipient answers the same new claim. The new
-- claim has the units not refunded, the old one's price, creation time and
-- deadline; the old one becomes `transferred`. When the campaign's rule says
-- so (meta xf_limits), the recipient's per-user and per-SKU limits apply.
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
local m = redis.call('HMGET', K.meta, 'fenced', 'xf_limits', 'per_user', 'tk_on', 'id', 'salt')
if m[1] == '1' then return {FENCED, 'fenced', ''} end
local craw = redis.call('HGET', K.claims, x.claim)
local c = craw and parse_claim(craw)
if not c or c.user ~= x.giver or c.status ~= 'confirmed' then
  return {CONFLICT, 'transfer_stale', ''}
end
for i = 1, c.qty do
  local t = redis.call('HGET', T, x.claim .. '-' .. i)
  if t and parse_ticket(t).status == 'in' then return {CONFLICT, 'transfer_checked_in', ''} end
end
local rraw = redis.call('HGET', R, x.claim)
local left = c.qty - (rraw and parse_refund(rraw).units or 0)
if m[2] == '1' then
  local u = redis.call('HMGET', K.users, recipient, recipient .. '|' .. c.sku)
  local total, per_sku = tonumber(u[1] or '0'), tonumber(u[2] or '0')
  local per_user = tonumber(m[3] or '-1')
  local sku_lim = tonumber(redis.call('HGET', K.stock, c.sku .. '.lim') or '-1')
  if per_user >= 0 and total + left > per_user then
    return {LIMIT_EXCEEDED, 'per_user:' .. per_user .. ':' .. total, ''}
  end
  if sku_lim >= 0 and per_sku + left > sku_lim then
    return {LIMIT_EXCEEDED, 'per_sku:' .. sku_lim .. ':' .. per_sku, ''}
  end
end

local new_id = m[5] .. '.' .. string.sub(redis.sha1hex(m[6] .. '|transfer|' .. token), 1, 20)
local giver = c.user
c.status = 'transferred'
redis.call('HSET', K.claims, x.claim, format_claim(c))
redis.call('HSET', K.claims, new_id, format_claim({status = 'confirmed', user = recipient,
  sku = c.sku, qty = left, deadline = c.deadline, price = c.price, created = c.created}))
redis.call('HINCRBY', K.users, giver, -left)
redis.call('HINCRBY', K.users, giver .. '|' .. c.sku, -left)
redis.call('HINCRBY', K.users, recipient, left)
redis.call('HINCRBY', K.users, recipient .. '|' .. c.sku, left)
redis.call('SREM', GIVER_SET, x.claim)
if m[4] == '1' then redis.call('SADD', RECIPIENT_SET, new_id) end
x.status, x.recipient, x.new_claim = 'accepted', recipient, new_id
redis.call('HSET', X, token, format_transfer(x))
count('transfers')
emit(now, 'claim_transferred', {'claim', x.claim, 'new_claim', new_id, 'from', giver,
                                'user', recipient, 'sku', c.sku, 'qty', left,
                                'price', c.price, 'created', c.created,
                                'deadline', c.deadline, 'token', token})
return {OK, '', new_id}
