-- Store an MFA ticket with its lifetime in one step. KEYS[1] ticket; ARGV[1] data, ARGV[2] ttl s.
redis.call('HSET', KEYS[1], 'data', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
