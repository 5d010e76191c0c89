-- Create a session, prune the user's index and enforce the per-user limit in one step.
-- KEYS[1] session key, KEYS[2] user index (zset: session id -> expiry ms), KEYS[3] credential version
-- ARGV[1] record (JSON), ARGV[2] ttl ms, ARGV[3] now ms, ARGV[4] max sessions,
-- ARGV[5] 'evict' | 'reject', ARGV[6] expected credential version or '', ARGV[7] session id,
-- ARGV[8] session key prefix of this user (ends with ':'; same hash tag, so same slot),
-- ARGV[9] until (ms) of pushed revocations; KEYS[4] the tag's revocation outbox
-- Returns {'ok', version, evicted ids...} | {'version', version} | {'limit', version}
local ver = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[6] ~= '' and tonumber(ARGV[6]) ~= ver then
  return {'version', ver}
end
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- Members whose record vanished some other way count for nothing.
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
local live = {}
for _, sid in ipairs(members) do
  local raw = redis.call('GET', ARGV[8] .. sid)
  if raw then
    local ok, rec = pcall(cjson.decode, raw)
    local seen = (ok and tonumber(rec.ls)) or 0
    table.insert(live, {sid, seen})
  else
    redis.call('ZREM', KEYS[2], sid)
  end
end
local max = tonumber(ARGV[4])
local evicted = {}
if #live >= max then
  if ARGV[5] == 'reject' then
    return {'limit', ver}
  end
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, #live - max + 1 do
    local sid = live[i][1]
    redis.call('DEL', ARGV[8] .. sid)
    redis.call('ZREM', KEYS[2], sid)
    redis.call('RPUSH', KEYS[4], string.format('{"kind":"session","sid":%s,"until":%d}', cjson.encode(sid), tonumber(ARGV[9])))
    table.insert(evicted, sid)
  end
end
-- The record arrives without `cv` (0 is the default); append it only when it is not 0, and
-- never re-encode the JSON here (cjson would escape every '/' and cost bytes per session).
local rec = ARGV[1]
if ver > 0 then
  rec = string.sub(rec, 1, -2) .. ',"cv":' .. string.format('%d', ver) .. '}'
end
if not redis.call('SET', KEYS[1], rec, 'PX', ARGV[2], 'NX') then
  return redis.error_reply('session id collision')
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[7])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], top[2])
local out = {'ok', ver}
for _, sid in ipairs(evicted) do table.insert(out, sid) end
return out
