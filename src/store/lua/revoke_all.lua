-- End every session of a user and bump the credential version ("password changed",
-- "account disabled"): tokens carrying the old version die with them.
-- KEYS[1] credential version, KEYS[2] user index, KEYS[3] fingerprint, KEYS[4] revocation outbox
-- ARGV[1] session key prefix of this user, ARGV[2] new fingerprint or '' (then nothing happens
-- unless the stored fingerprint differs), ARGV[3] user id, ARGV[4] until (ms)
-- Returns the number of sessions ended, or -1 when the fingerprint was unchanged / first seen.
if ARGV[2] ~= '' then
  local stored = redis.call('GET', KEYS[3])
  redis.call('SET', KEYS[3], ARGV[2])
  if (not stored) or stored == ARGV[2] then
    return -1
  end
end
local ver = redis.call('INCR', KEYS[1])
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. sid)
end
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[4], string.format('{"kind":"user","user":%s,"min_version":%d,"until":%d}', cjson.encode(ARGV[3]), ver, tonumber(ARGV[4])))
return n
