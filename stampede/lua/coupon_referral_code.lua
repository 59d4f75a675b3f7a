-- coupon_referral_code: a member's personal referral code for a drop, minted once.
--
-- KEYS[1..NKEYS] the campaign key set (K, include/common.lua)
-- KEYS[NKEYS + 1..NCKEYS] the drop's coupon keys (C, include/coupons.lua)
-- ARGV[1]     user           ARGV[2] the member's identity (hashed person, '' if none)
-- ARGV[3]     a random seed (the code's characters)
-- Returns     {code, reason, referral code, 1 if minted now else 0}; reason:
--             no_campaign, not_a_drop, no_referral, identity_required, ''
--
-- The member's code is kept in cusers: rc|<CODE> -> "<user>|<identity>" (the
-- identity lets a claim refuse the same person as friend) and ru|<user> -> CODE.
-- Asking again answers the same code. A code is 'R' and 8 characters of the code
-- alphabet, never one of the drop's promo codes. Event: referral_code_minted.
--@include common
--@include coupons

local user, identity, seed = ARGV[1], ARGV[2], ARGV[3]
local m = redis.call('HMGET', K.meta, 'id', 'coupons', 'cp_ref')
if not m[1] then return {NOT_FOUND, 'no_campaign', '', 0} end
if m[2] ~= '1' then return {NOT_FOUND, 'not_a_drop', '', 0} end
if not m[3] then return {NOT_FOUND, 'no_referral', '', 0} end
local mine = redis.call('HGET', C.cusers, 'ru|' .. user)
if mine then return {OK, '', mine, 0} end
if identity == '' then return {LIMIT_EXCEEDED, 'identity_required', '', 0} end
local n, code = 0, nil
repeat
  code = 'R' .. b32(redis.sha1hex(seed .. '|' .. n))
  n = n + 1
until redis.call('HEXISTS', C.cusers, 'rc|' .. code) == 0
  and redis.call('HEXISTS', K.meta, 'cp_promo:' .. code) == 0
redis.call('HSET', C.cusers, 'rc|' .. code, user .. '|' .. identity, 'ru|' .. user, code)
emit(now_ms(), 'referral_code_minted', {'user', user, 'code', code, 'identity', identity})
return {OK, '', code, 1}
