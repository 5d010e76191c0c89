-- The limit across regions: in the user's owner region, count the user's sessions of every
-- region and take a place for a new one, atomically (one key: one slot).
-- KEYS[1] the user's ledger (zset: session id -> absolute expiry ms)
-- ARGV[1] now ms, ARGV[2] max sessions, ARGV[3] 'evict' | 'reject', ARGV[4] the new session id,
-- ARGV[5] its absolute expiry ms.
-- Returns {'ok', id to evict, its expiry, ...} | {'limit', id, ...} (the ids that count, so the
-- caller can drop those that no longer exist and ask again). Ids to evict stay in the ledger
-- until the caller has ended their sessions and removes them: a reply lost on the way can
-- never leave a live session uncounted.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[2])
local out = {'ok'}
if n >= max then
  if ARGV[3] == 'reject' then
    local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
    table.insert(ids, 1, 'limit')
    return ids
  end
  -- The oldest go first (the lowest absolute expiry was created first).
  local old = redis.call('ZRANGE', KEYS[1], 0, n - max, 'WITHSCORES')
  for i = 1, #old, 2 do
    table.insert(out, old[i])
    table.insert(out, old[i + 1])
  end
end
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[4])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], top[2])
return out
