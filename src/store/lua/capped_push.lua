-- Push onto a capped list that expires: one key, so it runs whole on a cluster too (a MULTI
-- block fails as a whole when its slot is moving). KEYS[1] list; ARGV[1] entry, ARGV[2] cap,
-- ARGV[3] ttl seconds.
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
