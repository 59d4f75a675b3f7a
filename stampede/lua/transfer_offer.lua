-- transfer_offer: the holder of a sold claim opens a single-use transfer of it.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the campaign's transfers hash (token hash -> transfer record)
-- KEYS[NKEYS + 2] its tickets hash (a claim with a checked-in ticket stays put)
-- ARGV[1]     claim_id       ARGV[2] user (must hold it)
-- ARGV[3]     hash of the transfer token (the token itself is never stored)
-- ARGV[4]     one ticket's number n ("<claim_id>-<n>") to transfer alone; 0: the claim
-- Returns     {code, reason, expires_ms} (CAMPAIGN_MISSING: no campaign state); reasons:
--             transfers_off, transfer_not_sold, transfer_checked_in, no_sale_ticket,
--             ticket_not_valid
--
-- The offer lasts meta xf_ttl_ms. Several may be open; the first accepted
-- wins, the others then find the claim (or the ticket) gone. Event: transfer_offered.
--@include common
--@include refund_records

local X, T = KEYS[NKEYS + 1], KEYS[NKEYS + 2]
local claim_id, user, token, unit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4] or '0')
local present = campaign_present()
if present ~= OK then return {present, present == FENCED and 'fenced' or '', 0} end
local raw = redis.call('HGET', K.claims, claim_id)
if not raw then return {NOT_FOUND, 'no_claim', 0} end
local c = parse_claim(raw)
if c.user ~= user then return {NOT_FOUND, 'no_claim', 0} end
local m = redis.call('HMGET', K.meta, 'fenced', 'xf_on', 'xf_ttl_ms', 'tk_on')
if m[1] == '1' then return {FENCED, 'fenced', 0} end
if unit > 0 and (m[4] ~= '1' or unit > c.qty) then
  return {NOT_FOUND, 'no_sale_ticket', 0}
end
if m[2] ~= '1' then return {CONFLICT, 'transfers_off', 0} end
if c.status ~= 'confirmed' then return {CONFLICT, 'transfer_not_sold', 0} end
if unit > 0 then  -- one ticket: it must be valid (not checked in, refunded or moved)
  local t = redis.call('HGET', T, claim_id .. '-' .. unit)
  if t and parse_ticket(t).status == 'in' then return {CONFLICT, 'transfer_checked_in', 0} end
  if t then return {CONFLICT, 'ticket_not_valid', 0} end
else
  local valid = 0
  for i = 1, c.qty do
    local t = redis.call('HGET', T, claim_id .. '-' .. i)
    local st = t and parse_ticket(t).status
    if st == 'in' then return {CONFLICT, 'transfer_checked_in', 0} end
    if not st then valid = valid + 1 end
  end
  if m[4] == '1' and valid == 0 then return {CONFLICT, 'transfer_not_sold', 0} end
end

local now = now_ms()
local expires = now + tonumber(m[3])
redis.call('HSET', X, token, format_transfer({status = 'open', claim = claim_id, giver = user,
                                              expires = expires, recipient = '',
                                              new_claim = '', unit = unit}))
emit(now, 'transfer_offered', {'claim', claim_id, 'user', user, 'expires', expires,
                               'token', token, 'ticket', unit})
return {OK, '', expires}
