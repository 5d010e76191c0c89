-- Rotate a native session's refresh token, atomically.
-- KEYS[1] session key; ARGV[1] presented hash, ARGV[2] successor hash, ARGV[3] now ms,
-- ARGV[4] grace ms, ARGV[5] default idle ms, ARGV[6] session id, ARGV[7] user-index key prefix
-- ('tsr:u:{tag}:', same slot; the user id comes from the record), ARGV[8] until (ms);
-- KEYS[2] the tag's revocation outbox; ARGV[9] credential-version key prefix ('tsr:v:{tag}:'):
-- a record stamped below the user's current version is dead, index or not.
-- Returns {'rotated', record} | {'grace', record} | {'reused', user} | {'mismatch', current hash,
-- user} | {'unknown'}
--
-- Reuse is declared here only for the one spent secret the record names (`rp`). Any other
-- secret changes nothing: the caller proves, by walking the successor chain, whether it is a
-- genuine older generation before it ends anything (a session id alone is public).
local raw = redis.call('GET', KEYS[1])
if not raw then return {'unknown'} end
local rec, packed = decode_record(raw)
if not rec then return {'unknown'} end
local now = tonumber(ARGV[3])
if (not rec.rh) or rec.rh == '' then return {'unknown'} end
if now >= tonumber(rec.ae) or now >= tonumber(rec.ie) then return {'unknown'} end
if tonumber(rec.cv or 0) < tonumber(redis.call('GET', ARGV[9] .. rec.u) or '0') then
  return {'unknown'}
end
local index = ARGV[7] .. rec.u
local state
if rec.rh == ARGV[1] then
  rec.rp = rec.rh
  rec.rh = ARGV[2]
  rec.rt = now
  state = 'rotated'
elseif rec.rp == ARGV[1] and rec.rh == ARGV[2] and now - tonumber(rec.rt or 0) <= tonumber(ARGV[4]) then
  -- The immediate predecessor, retried within the grace window: the same successor again.
  state = 'grace'
elseif rec.rp == ARGV[1] then
  -- The spent predecessor presented again after its window: someone holds a copy. End it.
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', index, ARGV[6])
  redis.call('RPUSH', KEYS[2], string.format('{"kind":"session","sid":%s,"until":%d}', cjson.encode(ARGV[6]), tonumber(ARGV[8])))
  return {'reused', rec.u}
else
  return {'mismatch', rec.rh, rec.u}
end
local idle = tonumber(rec.it or 0)
if idle <= 0 then idle = tonumber(ARGV[5]) end
local ie = math.min(now + idle, tonumber(rec.ae))
rec.ls = now
rec.ie = ie
local out = encode_record(rec, packed)
redis.call('SET', KEYS[1], out, 'PX', math.max(ie - now, 1), 'XX')
redis.call('ZADD', index, 'XX', ie, ARGV[6])
local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', index, top[2]) end
return {state, out}
