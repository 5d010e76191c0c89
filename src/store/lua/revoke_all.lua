-- End every session of a user and move the credential version ("password changed",
-- "account disabled"): tokens carrying an older version die with them.
-- KEYS[1] credential version, KEYS[2] user index, KEYS[3] fingerprint, KEYS[4] revocation outbox
-- ARGV[1] session key prefix of this user, ARGV[2] new fingerprint or '' (unconditional),
-- ARGV[3] user id, ARGV[4] until (ms), ARGV[5] '1' when the users file says the user is
-- disabled.
-- Returns the number of sessions ended, or -1 when nothing had to change.
--
-- Versions never go down, even when Redis lost the key: the new one is max(stored + 1, now) on
-- Redis's clock, so it passes every version any token still alive could carry.
if ARGV[2] ~= '' then
  local stored = redis.call('GET', KEYS[3])
  redis.call('SET', KEYS[3], ARGV[2])
  if stored == ARGV[2] then
    return -1
  end
  if not stored and ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[2]) == 0 then
    -- First sight of this user, and no session to vouch for: nothing to end.
    return -1
  end
  -- A changed entry, or an unknown one with sessions (or a disabled user): a missing
  -- fingerprint never means "trust what exists".
end
-- Credential versions are stamped with Redis's own clock (one clock for every node that
-- touches this user, so no node's skew can order them wrongly).
local function redis_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now = redis_ms()
local ver = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, now)
redis.call('SET', KEYS[1], ver)
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. sid)
end
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[4], string.format('{"kind":"user","user":%s,"min_version":%d,"until":%d}', cjson.encode(ARGV[3]), ver, tonumber(ARGV[4])))
return n
