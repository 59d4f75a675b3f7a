-- Presale access phases (stampede/domain/phases.py): meta field `ph`, in order
-- of opening, 'name@opens_ms=tier,tier/segment,segment;...' with '*' for
-- everyone ('' or absent: no phases). Parsed once per script run. Without
-- segments, a claimant's opening depends on their tiers alone: `memo` keeps it by
-- tiers for the run (memo_node, include/common.lua).
local function parse_phases(raw)
  if not raw or raw == '' then return nil end
  local out = {memo = {}}
  for part in string.gmatch(raw, '[^;]+') do
    local name, at, audience = string.match(part, '^([^@]+)@(%d+)=(.*)$')
    local p = {name = name, opens = tonumber(at), everyone = audience == '*', tiers = {},
               segments = {}}
    if not p.everyone then
      local tiers, segments = string.match(audience, '^([^/]*)/?(.*)$')
      for t in string.gmatch(tiers, '[^,]+') do p.tiers[t] = true end
      for sg in string.gmatch(segments, '[^,]+') do p.segments[#p.segments + 1] = sg end
      if #p.segments > 0 then out.memo = nil end
    end
    out[#out + 1] = p
  end
  return out
end

-- When the claimant's access opens: the earliest phase that is everyone's,
-- names one of their `tiers` (a list), or has `user` in one of its segments
-- (members are fields '<segment>|<user>' of the hash `segment_key`); nil
-- when no phase admits them.
local function first_opening(phases, tiers, user, segment_key)
  for _, p in ipairs(phases) do
    if p.everyone then return p.opens end
    for _, t in ipairs(tiers) do
      if p.tiers[t] then return p.opens end
    end
    for _, sg in ipairs(p.segments) do
      if redis.call('HEXISTS', segment_key, sg .. '|' .. user) == 1 then return p.opens end
    end
  end
  return nil
end

-- first_opening, kept by tiers when no phase has segments.
local function phase_opening(phases, tiers, user, segment_key)
  local memo = phases.memo
  if not memo then return first_opening(phases, tiers, user, segment_key) end
  local node = memo_node(memo, tiers)
  local opens = node[MEMO_VALUE]
  if opens == nil then
    opens = first_opening(phases, tiers, user, segment_key) or false
    node[MEMO_VALUE] = opens
  end
  return opens or nil
end

-- The phase gate of a claim: nil when the claimant's access phase is open at
-- `now` (or the campaign has no phases), else the refusal's code and detail:
-- NOT_ELIGIBLE when no phase admits them (counted through `tally`, the script's
-- outcome counter, as not_eligible), NOT_OPEN 'phase_not_open:<opens_ms>:<wait_ms>'
-- before their phase opens.
local function phase_refusal(phases, tiers, user, segment_key, now, tally)
  if not phases then return nil end
  local opens = phase_opening(phases, tiers, user, segment_key)
  if not opens then
    tally('not_eligible')
    return NOT_ELIGIBLE, 'not_eligible'
  end
  if now < opens then return NOT_OPEN, 'phase_not_open:' .. opens .. ':' .. (opens - now) end
  return nil
end
