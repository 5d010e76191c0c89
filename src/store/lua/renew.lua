-- Move a session's idle deadline, only if it still exists with the expected secret hash and
-- is not stamped below its user's current credential version. Never creates anything: a
-- session deleted meanwhile stays deleted. This is the Redis-side version check every session
-- gets at least once per pushed-revocation lifetime (`SessionPolicy::recheck_ms`): a revoke-all
-- whose index did not list this session still ends it here.
-- KEYS[1] session key, KEYS[2] user index, KEYS[3] the user's credential version
-- ARGV[1] expected secret hash, ARGV[2] now ms, ARGV[3] new idle deadline ms, ARGV[4] ttl ms,
-- ARGV[5] session id
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec, packed = decode_record(raw)
if not rec then return 0 end
if rec.sh ~= ARGV[1] then return 0 end
if tonumber(rec.cv or 0) < tonumber(redis.call('GET', KEYS[3]) or '0') then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[5])
  return 0
end
rec.ls = tonumber(ARGV[2])
rec.ie = tonumber(ARGV[3])
local out = encode_record(rec, packed)
redis.call('SET', KEYS[1], out, 'PX', ARGV[4], 'XX')
redis.call('ZADD', KEYS[2], 'XX', tonumber(ARGV[2]) + tonumber(ARGV[4]), ARGV[5])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[2], top[2]) end
return 1
