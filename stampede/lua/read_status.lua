-- read_status: bring the campaign up to date (due waves, lapsed holds) and read it.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- ARGV[1]     the most lapsed holds to expire before reading
-- Returns     {CAMPAIGN_MISSING} when the campaign has no state, else {code, now_ms, meta (flat name/value list), stock (flat), counts (flat),
--             pending waves (flat member/score list),
--             {waiting on waitlists, waiting-room tickets, admitted now}}
--@include common

-- (a fenced campaign is read as it is: its meta says fenced, the caller decides)
if not redis.call('HGET', K.meta, 'state') then return {CAMPAIGN_MISSING} end
local now = now_ms()
release_due_waves(now)
expire_due_holds(now, tonumber(ARGV[1]))
-- (a sharded campaign's shard k >= 1 runs no queue: its admitted zset holds used turns)
local room = advance_queue(now)
return {OK, now, redis.call('HGETALL', K.meta), redis.call('HGETALL', K.stock),
        redis.call('HGETALL', K.counts),
        redis.call('ZRANGE', K.waves, 0, -1, 'WITHSCORES'),
        {redis.call('ZCARD', K.waitlist), room and redis.call('ZCARD', K.queue) or 0,
         room and redis.call('ZCOUNT', K.admitted, '(' .. now, '+inf') or 0}}
