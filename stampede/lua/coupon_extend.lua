-- coupon_extend: one bounded batch of a drop's pending validity extension.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     how many coupons to look at in this call (HSCAN COUNT: bounds its run time)
-- Returns     {extended, more}: coupons whose validity grew in this call; more is 1
--             while an extension is still pending (call again)
--
-- Works on the oldest pending extension (meta cp_grow, queued by coupon_patch.lua)
-- from the cursor in meta cp_grow_cur; when the scan comes round, the extension is
-- done and the next one starts. Idempotent and resumable: a batch run twice, or
-- after a crash, grows nothing twice (the rule is a maximum), and coupons that
-- scripts caught up on their own (include/coupons.lua catch_up) are skipped.
--@include common
--@include coupons

local jobs = pending_growth()
if not jobs then return {0, 0} end
-- Being rebuilt: recovery extends the coupons it restores itself; stop here (the
-- sweeper resumes whatever is still pending afterwards).
if redis.call('HGET', K.meta, 'fenced') == '1' then return {0, 0} end
local job = jobs[1]
local scan = redis.call('HSCAN', C.cpn, redis.call('HGET', K.meta, 'cp_grow_cur') or '0',
                        'COUNT', tonumber(ARGV[1]))
local entries, n = scan[2], 0
for i = 1, #entries, 2 do
  local id = entries[i]
  local c = parse_coupon(entries[i + 1])
  local vt = grown_vt(c, job)
  if vt > c.vt and tonumber(redis.call('HGET', C.cusers, 'x|' .. id) or '0') < job.id then
    c.vt = vt
    redis.call('HSET', C.cpn, id, format_coupon(c))
    redis.call('ZADD', C.cexp, vt, id)
    n = n + 1
  end
end
if scan[1] ~= '0' then
  redis.call('HSET', K.meta, 'cp_grow_cur', scan[1])
  return {n, 1}
end
table.remove(jobs, 1)
redis.call('HDEL', K.meta, 'cp_grow_cur')
if #jobs == 0 then
  redis.call('HDEL', K.meta, 'cp_grow')
  return {n, 0}
end
redis.call('HSET', K.meta, 'cp_grow', cjson.encode(jobs))
return {n, 1}
