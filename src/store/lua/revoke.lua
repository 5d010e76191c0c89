-- End one session. KEYS[1] session key, KEYS[2] user index; ARGV[1] session id.
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
