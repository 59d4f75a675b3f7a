-- define_campaign: create a campaign, or replace one that has no claims yet.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     campaign id         ARGV[2] name
-- ARGV[3]     opens_ms            ARGV[4] closes_ms
-- ARGV[5]     hold_ttl_ms         ARGV[6] per-user limit (-1: none)
-- ARGV[7]     max qty per claim   ARGV[8] the spec as JSON (for the event)
-- ARGV[9]     actor (who asked, for the audit trail in the event)
-- KEYS[NKEYS + 1] the throttle's block/allow lists hash (include/guard.lua)
-- ARGV[10]    optional settings as a JSON object of meta fields (strings): the
--             waitlist (wl_max, offer_ttl_ms), the waiting room (wr_*), salt,
--             the throttle (th, th_spec); th_lists, the lists hash as a JSON
--             object, replaces KEYS[NKEYS + 1] instead of going to meta; the event
--             carries it whole, so recovery restores the same configuration
-- ARGV[11]    n, the SKU count; then n quads: sku, price, per-user limit (-1: none),
--             price steps (stampede/domain/pricing.py; '' none)
-- ARGV[..]    then wave quads to the end: index, sku, qty, at_ms
-- Returns     {code, created}: created is 1 for a new campaign, 0 for a replacement
--
-- A campaign with claims is never replaced (CONFLICT): its counters are the
-- truth of what was sold. Waves already due are released at once. A
-- replacement drops the waitlists but keeps the waiting room's tickets and
-- serving state: early arrivals keep their places.
--@include common

local now = now_ms()
local exists = redis.call('EXISTS', K.meta) == 1
if exists and redis.call('HLEN', K.claims) > 0 then return {CONFLICT, 0} end
local optional = cjson.decode(ARGV[10])
local lists = optional['th_lists']
optional['th_lists'] = nil
if exists then
  redis.call('DEL', K.stock, K.users, K.deadlines, K.expiry, K.waves, K.counts, K.waitlist,
             K.wlentries, K.offers)
  redis.call('HDEL', K.meta, 'xtail', 'wl_max', 'offer_ttl_ms', 'wr_on', 'wr_rate', 'wr_burst',
             'wr_max_active', 'wr_window_ms', 'wr_token_ttl_ms', 'wr_paused')
  -- after-sale parts the new definition may not have (domain/aftersale.py)
  redis.call('HDEL', K.meta, 'tk_on', 'tk_venue', 'oc_drop', 'oc_sku', 'ocf_drop', 'ocf_sku',
             'xf_on', 'xf_ttl_ms', 'xf_limits')
  -- A redefined drop keeps none of its old codes (promo codes, referral, code-only SKUs)
  -- nor points prices, nor paid vouchers.
  for _, name in ipairs(redis.call('HKEYS', K.meta)) do
    if string.sub(name, 1, 9) == 'cp_promo:' or string.sub(name, 1, 9) == 'cp_coded:'
        or string.sub(name, 1, 10) == 'cp_points:' or name == 'cp_ref'
        or string.sub(name, 1, 8) == 'cp_paid:' or name == 'cp_paids' then
      redis.call('HDEL', K.meta, name)
    end
  end
end
redis.call('HSET', K.meta, 'id', ARGV[1], 'name', ARGV[2], 'opens_ms', ARGV[3],
           'closes_ms', ARGV[4], 'hold_ttl_ms', ARGV[5], 'per_user', ARGV[6],
           'max_qty', ARGV[7], 'state', 'active', 'fenced', '0')
redis.call('HSETNX', K.meta, 'epoch', '1')
for name, value in pairs(optional) do
  if name == 'wr_served' or name == 'wr_tokens' or name == 'wr_at' or name == 'wr_seq'
      or name == 'salt' then
    redis.call('HSETNX', K.meta, name, value)  -- serving state survives a replacement
  else
    redis.call('HSET', K.meta, name, value)
  end
end
local n = tonumber(ARGV[11])
local i = 12
for _ = 1, n do
  local sku = ARGV[i]
  redis.call('HSET', K.stock, sku .. '.a', 0, sku .. '.h', 0, sku .. '.s', 0, sku .. '.r', 0,
             sku .. '.price', ARGV[i + 1], sku .. '.lim', ARGV[i + 2])
  if ARGV[i + 3] ~= '' then redis.call('HSET', K.stock, sku .. '.ps', ARGV[i + 3]) end
  i = i + 4
end
while i <= #ARGV do
  redis.call('ZADD', K.waves, ARGV[i + 3],
             format_wave({idx = ARGV[i], sku = ARGV[i + 1], qty = ARGV[i + 2]}))
  i = i + 4
end
if KEYS[NKEYS + 1] then
  redis.call('DEL', KEYS[NKEYS + 1])
  local fields = {}
  for f, v in pairs(cjson.decode(lists or '{}')) do
    fields[#fields + 1] = f
    fields[#fields + 1] = v
    if #fields >= 1000 then redis.call('HSET', KEYS[NKEYS + 1], unpack(fields)); fields = {} end
  end
  if #fields > 0 then redis.call('HSET', KEYS[NKEYS + 1], unpack(fields)) end
end
emit(now, 'campaign_defined', {'spec', ARGV[8], 'actor', ARGV[9], 'replaced', exists and 1 or 0,
                               'meta', ARGV[10]})
release_due_waves(now)
return {OK, exists and 0 or 1}
