-- Record the first anomaly of a session. KEYS[1] session key; ARGV[1] now ms.
-- Returns 1 if this call recorded it, 0 if one was already recorded or the session is gone.
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec, packed = decode_record(raw)
if not rec then return 0 end
if rec.an and tonumber(rec.an) > 0 then return 0 end
rec.an = tonumber(ARGV[1])
local out = encode_record(rec, packed)
redis.call('SET', KEYS[1], out, 'KEEPTTL', 'XX')
return 1
