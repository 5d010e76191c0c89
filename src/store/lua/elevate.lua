-- Rotate a session's secret (and optionally record a step-up), only if the session still
-- exists with the expected old secret hash. The id, deadlines and TTL stay as they are.
-- KEYS[1] session key; ARGV[1] expected old hash, ARGV[2] new hash,
-- ARGV[3] elevated_at ms or '' (rotation only), ARGV[4] elevated acr
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local rec, packed = decode_record(raw)
if not rec then return 0 end
if rec.sh ~= ARGV[1] then return 0 end
rec.sh = ARGV[2]
if ARGV[3] ~= '' then
  rec.ea = tonumber(ARGV[3])
  rec.eacr = ARGV[4]
end
local out = encode_record(rec, packed)
redis.call('SET', KEYS[1], out, 'KEEPTTL', 'XX')
return 1
