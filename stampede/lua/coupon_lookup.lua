-- coupon_lookup: read coupons of a drop by locator or by id, with their templates.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     'loc' (the names are locators) or 'id' (coupon ids)
-- ARGV[2..]   the names
-- Returns     {now_ms, then per name: coupon_id, record, template spec JSON}
--             ('' for what does not exist). Reads only.
--@include common
--@include coupons

local out = {now_ms()}
for i = 2, #ARGV do
  local id = ARGV[i]
  if ARGV[1] == 'loc' then id = redis.call('HGET', C.codes, ARGV[i]) or '' end
  local raw = id ~= '' and redis.call('HGET', C.cpn, id) or false
  local spec = ''
  if raw then spec = redis.call('HGET', K.meta, 'cp_spec:' .. parse_coupon(raw).tpl) or '' end
  out[#out + 1] = raw and id or ''
  out[#out + 1] = raw or ''
  out[#out + 1] = spec
end
return out
