-- Erase a user: every session, then every per-user key (index, credential version,
-- fingerprint, TOTP state, the user's audit list, the limit ledger). The global audit stream keeps its own record
-- of the erasure.
-- KEYS[1] revocation outbox, KEYS[2] index, KEYS[3] credential version, KEYS[4] the last TOTP
-- step spent, KEYS[5..] other per-user keys; ARGV[1] session key prefix of this user, ARGV[2]
-- user id, ARGV[3] until (ms), ARGV[4] the longest a session can live (ms).
--
-- The spent TOTP step outlives the erasure by two minutes (a code is good for ±1 step, 90 s):
-- erasing must not make a just-used code usable again.
--
-- Every token of the user dies: the pushed minimum is max(version + 1, now) on Redis's clock.
-- The version key stays, holding that minimum, only as long as a session could live: a session
-- the index lost (so not deleted here) is stamped below it and refused on every use
-- (pushed minimum in memory, then renew.lua). A session created afterwards carries it, so its
-- tokens work at once.
-- Credential versions are stamped with Redis's own clock (one clock for every node that
-- touches this user, so no node's skew can order them wrongly).
local function redis_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. sid)
end
local ver = math.max(tonumber(redis.call('GET', KEYS[3]) or '0') + 1, redis_ms())
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[3], ver, 'PX', math.max(tonumber(ARGV[4]), 1))
redis.call('PEXPIRE', KEYS[4], 120000)
for i = 5, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('RPUSH', KEYS[1], string.format('{"kind":"user","user":%s,"min_version":%d,"until":%d}', cjson.encode(ARGV[2]), ver, tonumber(ARGV[3])))
return n
