-- Presale access phases (stampede/domain/phases.py): meta field `ph`, in order
-- of opening, 'name@opens_ms=tier,tier;...' with '*' for everyone ('' or
-- absent: no phases). Parsed once per script run.
local function parse_phases(raw)
  if not raw or raw == '' then return nil end
  local out = {}
  for part in string.gmatch(raw, '[^;]+') do
    local name, at, tiers = string.match(part, '^([^@]+)@(%d+)=(.*)$')
    local p = {name = name, opens = tonumber(at), everyone = tiers == '*', tiers = {}}
    if not p.everyone then
      for t in string.gmatch(tiers, '[^,]+') do p.tiers[t] = true end
    end
    out[#out + 1] = p
  end
  return out
end

-- When the claimant's access opens: the earliest phase that is everyone's or
-- names one of their `tiers` (a list); nil when no phase admits them.
local function phase_opening(phases, tiers)
  for _, p in ipairs(phases) do
    if p.everyone then return p.opens end
    for _, t in ipairs(tiers) do
      if p.tiers[t] then return p.opens end
    end
  end
  return nil
end
