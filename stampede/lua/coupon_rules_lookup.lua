-- coupon_rules_lookup: read coupons of a drop with their templates' rules (coupon rules).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     'loc' (the names are locators) or 'id' (coupon ids)
-- ARGV[2..]   the names
-- Returns     {now_ms, the drop's time zone, then per name: coupon_id, record,
--             template spec JSON, its revision, its replaced revisions JSON}
--             ('' for what does not exist). Reads only.
--
-- One call gives the engine all it prices a redemption or a qualification
-- with, and the scripts' clock (its windows are compiled for that time).
--@include common
--@include coupons

local out = {now_ms(), redis.call('HGET', K.meta, 'cp_tz') or 'UTC'}
local rules = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if ARGV[1] == 'loc' then id = redis.call('HGET', C.codes, ARGV[i]) or '' end
  local raw = id ~= '' and redis.call('HGET', C.cpn, id) or false
  local r = {'', '0', '[]'}
  if raw then
    local tpl = parse_coupon(raw).tpl
    if not rules[tpl] then
      local got = redis.call('HMGET', K.meta, 'cp_spec:' .. tpl, 'cp_rev:' .. tpl,
                             'cp_hist:' .. tpl)
      rules[tpl] = {got[1] or '', got[2] or '0', got[3] or '[]'}
    end
    r = rules[tpl]
  end
  out[#out + 1] = raw and id or ''
  out[#out + 1] = raw or ''
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
return out
