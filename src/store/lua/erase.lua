-- Erase a user: every session, then the per-user keys (index, version, fingerprint, TOTP step,
-- the user's audit stream). The global audit stream keeps its own record of the erasure.
-- KEYS[1] index, KEYS[2..] per-user keys; ARGV[1] session key prefix of this user.
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  n = n + redis.call('DEL', ARGV[1] .. sid)
end
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
return n
