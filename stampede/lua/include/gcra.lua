-- GCRA rate limiting: one value per limiter (the theoretical arrival time, TAT).
--
-- A limit is an emission interval T (ms per request) and a burst B (how
-- many requests may arrive at once). A request at `now` is allowed when
-- max(TAT, now) + T - now <= T * B; it then moves TAT to max(TAT, now) + T.
-- A refusal says exactly when to retry: (new TAT - now) - T * B ms.
-- Check every limiter first, then commit: a refused request consumes nothing.

-- The arithmetic alone, on a TAT already read (0: none): allowed, retry ms, new TAT.
local function gcra_step(tat, now, interval, burst)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local over = new_tat - now - interval * burst
  if over > 0 then return false, math.ceil(over), new_tat end
  return true, 0, new_tat
end

-- A limiter kept in a key of its own.
local function gcra_check(key, now, interval, burst)
  return gcra_step(tonumber(redis.call('GET', key) or '0'), now, interval, burst)
end

local function gcra_commit(key, now, new_tat)
  -- The key can expire once its TAT is in the past: it then means "fresh".
  redis.call('SET', key, new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
end
