-- End one session. KEYS[1] session key, KEYS[2] user index, KEYS[3] the tag's revocation
-- outbox; ARGV[1] session id, ARGV[2] until (ms) of the pushed revocation.
-- The outbox entry is written in the same script (same slot), so no revocation is lost between
-- Redis and the feed: a worker moves it to the region's stream (at least once).
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 1 then
  redis.call('RPUSH', KEYS[3], string.format('{"kind":"session","sid":%s,"until":%d}', cjson.encode(ARGV[1]), tonumber(ARGV[2])))
end
return n
