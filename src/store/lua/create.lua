-- Create a session, prune the user's index and enforce the per-user limit in one step.
-- KEYS[1] session key, KEYS[2] user index (zset: session id -> expiry ms), KEYS[3] credential version
-- ARGV[1] record (MessagePack, see record.lua), ARGV[2] ttl ms, ARGV[3] now ms, ARGV[4] max sessions,
-- ARGV[5] 'evict' | 'reject', ARGV[6] expected credential version or '', ARGV[7] session id,
-- ARGV[8] session key prefix of this user (ends with ':'; same hash tag, so same slot),
-- ARGV[9] until (ms) of pushed revocations; KEYS[4] the tag's revocation outbox,
-- KEYS[5] the user's users-file fingerprint, ARGV[10] the fingerprint the caller checked the
-- credentials against, or '' for users outside the users file; ARGV[11] the user id.
-- Returns {'ok', version, evicted ids...} | {'version', version} | {'limit', version}; an evicted
-- id prefixed with '?' was ended because nobody knew which users-file entry it was created under.
-- Credential versions are stamped with Redis's own clock (one clock for every node that
-- touches this user, so no node's skew can order them wrongly).
local function redis_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local stored = redis.call('GET', KEYS[3])
local ver = tonumber(stored or '0')
if ARGV[6] ~= '' and tonumber(ARGV[6]) ~= ver then
  return {'version', ver}
end
local now = tonumber(ARGV[3])
local function push_session(sid)
  redis.call('RPUSH', KEYS[4], string.format('{"kind":"session","sid":%s,"until":%d}', cjson.encode(sid), tonumber(ARGV[9])))
end
local evicted = {}
if ARGV[10] ~= '' then
  local fp = redis.call('GET', KEYS[5])
  if fp and fp ~= ARGV[10] then
    -- The entry changed since the caller checked it (or the caller's users file is stale).
    return {'version', ver}
  end
  if not fp then
    -- Every live session of a users-file user was created under the stored fingerprint. With
    -- none stored, what exists cannot be vouched for: it ends, and this session starts anew.
    for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      if redis.call('DEL', ARGV[8] .. sid) == 1 then
        push_session(sid)
        table.insert(evicted, '?' .. sid)
      end
    end
    redis.call('DEL', KEYS[2])
    redis.call('SET', KEYS[5], ARGV[10])
    -- Sessions the index did not list die too: the version moves past every stamp (and the
    -- move is pushed, for their tokens), and this session starts at the new version.
    ver = math.max(ver + 1, redis_ms())
    stored = tostring(ver)
    redis.call('SET', KEYS[3], ver)
    redis.call('RPUSH', KEYS[4], string.format('{"kind":"user","user":%s,"min_version":%d,"until":%d}', cjson.encode(ARGV[11]), ver, tonumber(ARGV[9])))
    table.insert(evicted, '?')
  end
end
-- A missing version (first session, erased user, lost data) starts at Redis's now: versions
-- only grow, and a version below a recently pushed minimum would make the new session's
-- tokens dead on arrival.
if not stored then
  ver = redis_ms()
  redis.call('SET', KEYS[3], ver)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- Members whose record vanished some other way count for nothing.
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
local live = {}
for _, sid in ipairs(members) do
  local raw = redis.call('GET', ARGV[8] .. sid)
  if raw then
    -- A record that does not decode still counts (first to go when evicting).
    local rec = decode_record(raw)
    local seen = (rec and tonumber(rec.ls)) or 0
    table.insert(live, {sid, seen})
  else
    redis.call('ZREM', KEYS[2], sid)
  end
end
local max = tonumber(ARGV[4])
if #live >= max then
  if ARGV[5] == 'reject' then
    return {'limit', ver}
  end
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, #live - max + 1 do
    local sid = live[i][1]
    redis.call('DEL', ARGV[8] .. sid)
    redis.call('ZREM', KEYS[2], sid)
    push_session(sid)
    table.insert(evicted, sid)
  end
end
-- The record arrives without `cv` (0 is the default, which is never stored).
local rec = ARGV[1]
if ver > 0 then
  local fields, packed = decode_record(rec)
  if not fields then return redis.error_reply('the new record does not decode') end
  fields.cv = ver
  rec = encode_record(fields, packed)
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
