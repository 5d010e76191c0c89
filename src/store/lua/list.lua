-- A user's live sessions, pruning the index on the way. O(sessions of that user), never SCAN.
-- KEYS[1] user index, KEYS[2] the user's credential version; ARGV[1] now ms, ARGV[2] session
-- key prefix of this user.
-- Returns a flat list: current credential version, then id1, record1, id2, record2, ... (the
-- caller drops records stamped below the current version: dead whatever the index says).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local out = {redis.call('GET', KEYS[2]) or '0'}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local raw = redis.call('GET', ARGV[2] .. sid)
  if raw then
    table.insert(out, sid)
    table.insert(out, raw)
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
return out
