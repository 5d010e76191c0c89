-- Accept a TOTP step only if it is newer than the last one used. KEYS[1] last step;
-- ARGV[1] step. Returns 1 (accepted) or 0 (replay).
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local step = tonumber(ARGV[1])
if step <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400)
return 1
