-- coupon_patch: a live change of a drop's caps and templates (coupon rules).
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     actor (who asked, for the event)
-- ARGV[2]     JSON {template: {"vt": ms, "vd": days}} of the templates whose validity
--             grows (-1: that kind unchanged), '{}' for none
-- ARGV[3]     templates revised, ',' joined ('' none): each gets its revision bumped
--             (cp_rev) and its replaced spec appended to cp_hist with this script's time
-- ARGV[4..]   meta name, value pairs (cp_per_day, cp_user_day, cp_mcap, cp_tpl:<t>,
--             cp_spec:<t>); "if:<field>" is a precondition: the field must equal
--             the value ('' absent)
-- Returns     {code, reason, before_json, after_json, 0}; a failed precondition is
--             {CONFLICT, 'precondition', ...}. Coupons extended: coupon_extend.lua
--
-- Everything is checked before the first write. Issued coupons follow the rule
-- of docs/coupon-rules.md: a longer validity reaches every active coupon of the
-- template (record and expiry schedule), queued here and applied in batches; scope and time rules are read at
-- redemption from the revisions (cp_hist), so nothing issued is rewritten for them.
--@include common
--@include coupons

if redis.call('HGET', K.meta, 'coupons') ~= '1' then return {NOT_FOUND, 'no_drop', '', '', 0} end
for i = 4, #ARGV, 2 do
  local field = string.match(ARGV[i], '^if:(.+)$')
  if field and (redis.call('HGET', K.meta, field) or '') ~= ARGV[i + 1] then
    return {CONFLICT, 'precondition', '', '', 0}
  end
end
local now = now_ms()
local before, after = {}, {}
for tid in string.gmatch(ARGV[3], '[^,]+') do
  local hist_field, rev_field = 'cp_hist:' .. tid, 'cp_rev:' .. tid
  local hist = cjson.decode(redis.call('HGET', K.meta, hist_field) or '[]')
  local old_rev = redis.call('HGET', K.meta, rev_field)
  hist[#hist + 1] = {now, redis.call('HGET', K.meta, 'cp_spec:' .. tid)}
  before[rev_field] = old_rev or '0'
  after[rev_field] = tostring(tonumber(old_rev or '0') + 1)
  after[hist_field] = cjson.encode(hist)
end
for i = 4, #ARGV, 2 do
  local name = ARGV[i]
  if not string.match(name, '^if:') then
    before[name] = redis.call('HGET', K.meta, name) or false
    after[name] = ARGV[i + 1]
  end
end
for name, value in pairs(after) do redis.call('HSET', K.meta, name, value) end

-- Longer validity reaches the coupons already issued (still active, not yet due),
-- not here: a drop may hold a million. The extension is queued (meta cp_grow) and
-- coupon_extend.lua applies it in bounded batches; scripts that touch a coupon
-- before its batch catch it up first (include/coupons.lua catch_up).
local grow = cjson.decode(ARGV[2])
local b, a = cjson.encode(before), cjson.encode(after)
emit(now, 'coupon_drop_patched', {'actor', ARGV[1], 'before', b, 'after', a,
                                  'grow', ARGV[2], 'extended', 0})
if next(grow) ~= nil then
  local jobs = pending_growth() or {}
  jobs[#jobs + 1] = {id = tonumber(redis.call('HGET', K.meta, 'evseq')), at = now, grow = grow}
  redis.call('HSET', K.meta, 'cp_grow', cjson.encode(jobs))
end
return {OK, '', b, a, 0}
