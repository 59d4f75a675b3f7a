-- throttle: GCRA limits on several keys at once (all allowed, or nothing consumed).
--
-- KEYS[1]     the campaign's meta hash (for its clock; may not exist)
-- KEYS[2..]   one limiter key per limit (built by engine/keys.py)
-- ARGV        two per limiter key, in order: interval_ms, burst
-- Returns     {allowed (1/0), retry_after_ms}: retry_after is the longest wait
--             among the refusing limits
--@include gcra

local t = redis.call('TIME')
local offset = tonumber(redis.call('HGET', KEYS[1], 'time_offset_ms') or '0')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + offset
local pending = {}
local wait = 0
for i = 2, #KEYS do
  local ok, retry, new_tat = gcra_check(KEYS[i], now, tonumber(ARGV[2 * i - 3]),
                                        tonumber(ARGV[2 * i - 2]))
  if not ok and retry > wait then wait = retry end
  pending[#pending + 1] = {KEYS[i], new_tat}
end
if wait > 0 then return {0, wait} end
for _, p in ipairs(pending) do gcra_commit(p[1], now, p[2]) end
return {1, 0}
