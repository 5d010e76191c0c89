-- Erase a user: every session, then the per-user keys (index, version, fingerprint, TOTP step,
-- the user's audit list). The global audit stream keeps its own record of the erasure.
-- KEYS[1] revocation outbox, KEYS[2] index, KEYS[3..] per-user keys;
-- ARGV[1] session key prefix of this user, ARGV[2] user id, ARGV[3] until (ms).
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. sid)
end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
-- Every token of the user dies: no credential version reaches 2^53 - 1.
redis.call('RPUSH', KEYS[1], string.format('{"kind":"user","user":%s,"min_version":9007199254740991,"until":%d}', cjson.encode(ARGV[2]), tonumber(ARGV[3])))
return n
