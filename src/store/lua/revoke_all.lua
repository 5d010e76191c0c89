-- End every session of a user and move the credential version ("password changed",
-- "account disabled"): tokens carrying an older version die with them.
-- KEYS[1] credential version, KEYS[2] user index, KEYS[3] fingerprint, KEYS[4] revocation outbox,
-- KEYS[5..] the user's second-factor failure counters (a changed entry starts them afresh: the
-- old password's holder can no longer reach the second step)
-- ARGV[1] session key prefix of this user, ARGV[2] new fingerprint or '' (unconditional),
-- ARGV[3] user id, ARGV[4] until (ms).
-- Returns the number of sessions ended, -1 when nothing had to change, or -2 when a user was
-- seen for the first time (no fingerprint stored) and no session had to end.
--
-- Versions never go down, even when Redis lost the key: the new one is max(stored + 1, now) on
-- Redis's clock, so it passes every version any token still alive could carry.
local first_sight = false
if ARGV[2] ~= '' then
  local stored = redis.call('GET', KEYS[3])
  first_sight = not stored
  redis.call('SET', KEYS[3], ARGV[2])
  if stored == ARGV[2] then
    return -1
  end
  -- A changed entry, or an unknown one: a missing fingerprint never means "trust what exists".
  -- Sessions may outlive their index, and tokens their sessions, so the version moves and the
  -- move is pushed even when nothing is listed (first sight of a user costs one push).
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
if ARGV[2] ~= '' then
  -- Only a changed users-file entry (a new password) lifts the code delays: a revoke-all the
  -- user or an admin asks for leaves them, or "log out everywhere" would reset the guessing.
  for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
end
redis.call('RPUSH', KEYS[4], string.format('{"kind":"user","user":%s,"min_version":%d,"until":%d}', cjson.encode(ARGV[3]), ver, tonumber(ARGV[4])))
if first_sight and n == 0 then return -2 end
return n
