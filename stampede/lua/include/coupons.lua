-- Coupon helpers, pasted after common by every coupon operation.
--
-- Coupon operations take the campaign key set (K) and then the drop's coupon
-- keys, as the table C (generated from stampede/state/keys.py DropKeys, which
-- defines their names and order once):
--   cpn      hash: coupon_id -> coupon record (status active, used or expired;
--                  gift: the hash of the open transfer token, '' if none)
--   codes    hash: locator -> coupon_id (the code without key id and signature)
--   cexp     zset: coupon_id scored by the end of its validity (ms)
--   cday     hash: per UTC day: "<day>" claims, "<day>|u|<user>" claims of a user,
--                  "<day>|m|<merchant>" redemptions by a merchant
--   cstats   hash: "<scope>|<name>" counters, scope '*' (all), 't:<template>',
--                  'm:<merchant>', 'd:<day>'
--   redeems  hash: redemption_id -> redemption record; "o|<merchant>|<order>|<coupon>"
--                  -> redemption_id (idempotency per merchant and order)
--   gifts    hash: token hash -> gift record
--   cusers   hash: "p|<identity>" claims by a person, "g|<user>" gifts received
--                  that count against the user's limit; codes users type:
--                  "c|<CODE>|<user>" claims of a promo code by a user,
--                  "rc|<CODE>" -> "<user>|<identity>" a member's referral code,
--                  "ru|<user>" -> the member's code, "rf|<user>" -> referrer of a
--                  friend (account) referred, "ri|<identity>" -> the friend's account
--                  (a person referred once), "rn|<user>" friends a member referred
-- Further keys (wallets, idempotency) follow at KEYS[NCKEYS + 1..]. Records
-- (coupon, redemption, gift, coupon_answer) are defined in
-- stampede/state/records.py; parse_<record>/format_<record> are generated.

--@include coupon_keys
--@include coupon_records
local DAY_MS = 86400000
local B32 = '23456789ABCDEFGHJKLMNPQRSTUVWXYZ'

local function meta_limit(name)
  return tonumber(redis.call('HGET', K.meta, name) or '-1')
end

local function template(tid)
  local raw = redis.call('HGET', K.meta, 'cp_tpl:' .. tid)
  return raw and cjson.decode(raw) or nil
end

-- Add `by` to counter `name` in every scope the change belongs to.
local function stat(name, by, tpl, day, merchant)
  redis.call('HINCRBY', C.cstats, '*|' .. name, by)
  if tpl then redis.call('HINCRBY', C.cstats, 't:' .. tpl .. '|' .. name, by) end
  if day then redis.call('HINCRBY', C.cstats, 'd:' .. day .. '|' .. name, by) end
  if merchant then redis.call('HINCRBY', C.cstats, 'm:' .. merchant .. '|' .. name, by) end
end

-- 8 characters of the code alphabet from 10 hex digits (40 bits).
local function b32(hex)
  local out = {}
  for half = 0, 1 do
    local n = tonumber(string.sub(hex, half * 5 + 1, half * 5 + 5), 16)
    local chars = {}
    for i = 4, 1, -1 do
      local r = n % 32
      chars[i] = string.sub(B32, r + 1, r + 1)
      n = (n - r) / 32
    end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

-- A fresh locator: the drop's prefix and 40 bits from the caller's random seed.
local prefix_cache = nil
local function new_locator(seed, salt)
  prefix_cache = prefix_cache or redis.call('HGET', K.meta, 'cp_no')
  local prefix = prefix_cache
  local n = 0
  while true do
    local loc = prefix .. b32(redis.sha1hex(seed .. '|' .. salt .. '|' .. n))
    if redis.call('HEXISTS', C.codes, loc) == 0 then return loc end
    n = n + 1
  end
end

-- A coupon's id: derived from its claim's seed and its number within the claim, so a
-- replay or a recovery names the same coupon.
local function coupon_id(cid, seed, n)
  return cid .. '.' .. string.sub(redis.sha1hex(seed .. '#' .. n), 1, 20)
end

-- Issue coupon number n of a claim (template tid, record t) to user: its record, its
-- locator, its expiry, the wallet, and the coupon_issued event. The caller counts the
-- stats (a claim tallies them per batch). Returns the coupon's id.
local function issue_coupon(now, cid, seed, n, user, wallet, claim_id, tid, t)
  local id = coupon_id(cid, seed, n)
  local vf, vt = t.vf, t.vt
  if t.vd >= 0 then vf, vt = now, now + t.vd * DAY_MS end
  local loc = new_locator(seed, n)
  -- the revision it is issued under: the scope rules it may use (docs/coupon-rules.md)
  local rev = tonumber(redis.call('HGET', K.meta, 'cp_rev:' .. tid) or '0')
  redis.call('HSET', C.cpn, id, format_coupon({status = 'active', owner = user, tpl = tid,
    uses = t.u, vf = vf, vt = vt, loc = loc, claimed = now, gift = '', claim = claim_id,
    rev = rev}))
  redis.call('HSET', C.codes, loc, id)
  redis.call('ZADD', C.cexp, vt, id)
  redis.call('SADD', wallet, id)
  emit(now, 'coupon_issued', {'coupon', id, 'user', user, 'template', tid,
                              'claim', claim_id, 'uses', t.u, 'value', t.f * t.u,
                              'valid_from', vf, 'valid_to', vt, 'locator', loc})
  return id
end

local function expire_coupon(now, coupon_id, c)
  c.status = 'expired'
  redis.call('HSET', C.cpn, coupon_id, format_coupon(c))
  redis.call('ZREM', C.cexp, coupon_id)
  stat('expired', 1, c.tpl, math.floor(now / DAY_MS))
  emit(now, 'coupon_expired', {'coupon', coupon_id, 'user', c.owner, 'template', c.tpl,
                               'uses_left', c.uses})
end

-- Longer validity for coupons already issued (coupon rules), without one script
-- over the whole drop: coupon_patch.lua queues an extension in meta cp_grow (a
-- JSON list of {id = the patch event's seq, at = its time, grow = {template:
-- {vt, vd}}}, oldest first; absent when none is pending) and coupon_extend.lua
-- works through the drop in bounded batches (HSCAN of cpn, cursor cp_grow_cur).
-- Until a batch reaches a coupon, every script that reads or changes it calls
-- catch_up first, so it is never expired, refused or changed on its old validity.
local function pending_growth()
  local raw = redis.call('HGET', K.meta, 'cp_grow')
  return raw and cjson.decode(raw) or nil
end

-- The rule of one extension, as of its patch: an active coupon of a grown
-- template whose validity had not ended then ends no sooner than the new rule says.
local function grown_vt(c, job)
  local g = job.grow[c.tpl]
  if not g or c.status ~= 'active' or job.at >= c.vt then return c.vt end
  local vt = c.vt
  if g.vt >= 0 then vt = math.max(vt, g.vt) end
  if g.vd >= 0 then vt = math.max(vt, c.vf + g.vd * DAY_MS) end
  return vt
end

-- What the pending extensions owe coupon c, applied once each and in order
-- (cusers "x|<coupon>" notes the last one applied: a coupon changed since, say
-- redeemed and rolled back, is not judged again on its new state). Writes the
-- coupon and its expiry when its validity grew; returns c. (It may write before a
-- script's checks refuse: what it writes is what coupon_extend.lua would, not
-- the script's change.)
local function catch_up(coupon_id, c)
  local jobs = pending_growth()
  if not jobs or not c then return c end
  local mark = 'x|' .. coupon_id
  local done = tonumber(redis.call('HGET', C.cusers, mark) or '0')
  local old_vt, last = c.vt, done
  for _, job in ipairs(jobs) do
    if job.id > done then
      c.vt = grown_vt(c, job)
      last = job.id
    end
  end
  if last ~= done then redis.call('HSET', C.cusers, mark, last) end
  if c.vt ~= old_vt then
    redis.call('HSET', C.cpn, coupon_id, format_coupon(c))
    redis.call('ZADD', C.cexp, c.vt, coupon_id)
  end
  return c
end
