-- checkin: door scans of a ticketed campaign's tickets, in order; the first admits.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1] the campaign's tickets hash (ticket_id -> ticket record)
-- KEYS[NKEYS + 2] its check-ins by gate (gate -> count)
-- KEYS[NKEYS + 3] its outbox of on_checkin grants (ticket_id -> "<user>|<drop>|<sku>")
-- ARGV[1..]   seven per scan: ticket_id, claim_id, unit number, the scan's time in
--             ms (0: now), and its scanner's venue (a scanner of another venue
--             admits nothing here), gate and id; the engine has checked each
--             code's signature and step. Scans of several scanners may share a run.
-- Returns     three per scan: verdict, gate, at. Verdicts: admitted; checked_in
--             (already: gate and at say where and when); refunded; not_found;
--             wrong_venue; fenced; lost (no campaign state: lost or never defined). Then one last element: 1 if the campaign grants
--             a pack on check-in (meta oc_drop), else 0.
--
-- One script run is atomic, so two gates scanning the same ticket at once see
-- one admitted and one checked_in. Refused scans change nothing. An admission
-- of a campaign with on_checkin also writes the holder's pack to the outbox, in
-- the same run: the grant itself is the drop's (another slot), done after.
--@include common
--@include refund_records

local T, G, OUTBOX = KEYS[NKEYS + 1], KEYS[NKEYS + 2], KEYS[NKEYS + 3]
local m = redis.call('HMGET', K.meta, 'tk_on', 'tk_venue', 'fenced', 'oc_drop', 'oc_sku',
                     'state')
local out = {}
local now = nil
for i = 1, #ARGV, 7 do
  local ticket, claim_id, unit, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]),
                                     tonumber(ARGV[i + 3])
  local venue, gate, scanner = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local verdict, vgate, vat = nil, '', 0
  if not m[6] then
    verdict = 'lost'  -- no campaign at all: the engine asks whether it is being healed
  elseif m[1] ~= '1' then
    verdict = 'not_found'
  elseif m[2] ~= venue then
    verdict = 'wrong_venue'
  elseif m[3] == '1' then
    verdict = 'fenced'
  else
    local raw = redis.call('HGET', K.claims, claim_id)
    local c = raw and parse_claim(raw)
    if not c or unit > c.qty or (c.status ~= 'confirmed' and c.status ~= 'refunded') then
      verdict = 'not_found'
    else
      local tr = redis.call('HGET', T, ticket)
      local t = tr and parse_ticket(tr)
      if t and t.status == 'moved' then  -- transferred alone: its new holder's code counts
        verdict = 'not_found'
      elseif c.status == 'refunded' or (t and t.status == 'refunded') then
        verdict = 'refunded'
      elseif t then
        verdict, vgate, vat = 'checked_in', t.gate, t.at
      else
        now = now or now_ms()
        if at <= 0 then at = now end
        redis.call('HSET', T, ticket, format_ticket({status = 'in', gate = gate, at = at,
                                                    scanner = scanner}))
        redis.call('HINCRBY', G, gate, 1)
        if m[4] then redis.call('HSET', OUTBOX, ticket, c.user .. '|' .. m[4] .. '|' .. m[5]) end
        emit(now, 'ticket_checked_in', {'ticket', ticket, 'claim', claim_id, 'user', c.user,
                                        'sku', c.sku, 'gate', gate, 'scanner', scanner,
                                        'at', at})
        verdict, vgate, vat = 'admitted', gate, at
      end
    end
  end
  out[#out + 1] = verdict
  out[#out + 1] = vgate
  out[#out + 1] = vat
end
out[#out + 1] = m[4] and 1 or 0
return out
