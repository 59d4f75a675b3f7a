-- waitlist_status: a user's waitlist entries, brought up to date first.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     user id
-- ARGV[2]     sku, or '' for every SKU of the campaign
-- ARGV[3]     the most lapsed holds to expire first (a lapsed offer passes on)
-- Returns     {code, now_ms, then six per entry: sku, status, position, qty,
--             joined_ms, claim_id}; position is 0 for an offered entry;
--             or {CAMPAIGN_MISSING} / {FENCED} (checked first)
--@include common

local user = ARGV[1]
local present = campaign_present()
if present ~= OK then return {present} end
local now = now_ms()
release_due_waves(now)
expire_due_holds(now, tonumber(ARGV[3]))
local skus = {}
if ARGV[2] ~= '' then
  skus[1] = ARGV[2]
else
  for _, f in ipairs(redis.call('HKEYS', K.stock)) do
    local sku = string.match(f, '^(.*)%.a$')
    if sku then skus[#skus + 1] = sku end
  end
  table.sort(skus)
end
local out = {OK, now}
for _, sku in ipairs(skus) do
  local raw = redis.call('HGET', K.wlentries, user .. '|' .. sku)
  if raw then
    local e = parse_entry(raw)
    local position = 0
    if e.status == 'waiting' then
      local lo = wl_range(sku)
      local member = format_wl_member({sku = sku, seq = e.seq, user = user})
      position = redis.call('ZLEXCOUNT', K.waitlist, lo, '(' .. member) + 1
    end
    for _, v in ipairs({sku, e.status, position, e.qty, e.joined, e.claim}) do out[#out + 1] = v end
  end
end
return out
