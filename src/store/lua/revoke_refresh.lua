-- End a native session by its refresh token (RFC 7009 revocation by the client itself).
-- KEYS[1] session key, KEYS[2] the tag's revocation outbox; ARGV[1] presented hash,
-- ARGV[2] session id, ARGV[3] user-index key prefix ('tsr:u:{tag}:'), ARGV[4] until (ms).
-- Returns {'revoked', user} when the presented secret is the current or the last spent one,
-- {'mismatch', current hash, user} when it is neither (nothing changes: the caller proves an
-- older generation before acting, because a session id alone is public), or {'unknown'}.
local raw = redis.call('GET', KEYS[1])
if not raw then return {'unknown'} end
local rec, packed = decode_record(raw)
if not rec then return {'unknown'} end
if (not rec.rh) or rec.rh == '' then return {'unknown'} end
if rec.rh ~= ARGV[1] and rec.rp ~= ARGV[1] then
  return {'mismatch', rec.rh, rec.u}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[3] .. rec.u, ARGV[2])
redis.call('RPUSH', KEYS[2], string.format('{"kind":"session","sid":%s,"until":%d}', cjson.encode(ARGV[2]), tonumber(ARGV[4])))
return {'revoked', rec.u}
