-- Reserve one guess (a password or a second-factor code) before it is checked, atomically, so
-- that simultaneous attempts cannot all pass the same check: the attempt counts as a failure
-- now, and `settle.lua` takes it back if the guess was right.
-- KEYS[1] the counter that delays (hash: n, last); KEYS[2] (optional) a wider counter (hash: n)
-- that raises the delay once the first has failed at least once. Same hash tag.
-- ARGV[1] now (ms), ARGV[2] delays in seconds by failures of KEYS[1] (comma-separated; the last
-- repeats), ARGV[3] delays by failures of KEYS[2], ARGV[4] how long counts are remembered (s).
-- Returns {wait ms (0: go ahead), failures of KEYS[1], failures of KEYS[2]}.
local function delay(table_text, n)
  local last
  local i = 0
  for v in string.gmatch(table_text, '%d+') do
    if i == n then return tonumber(v) end
    last = tonumber(v)
    i = i + 1
  end
  return last or 0
end
local now = tonumber(ARGV[1])
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local g = 0
if KEYS[2] then g = tonumber(redis.call('HGET', KEYS[2], 'n') or '0') end
if n > 0 then
  local d = delay(ARGV[2], n)
  if KEYS[2] then d = math.max(d, delay(ARGV[3], g)) end
  local wait = tonumber(redis.call('HGET', KEYS[1], 'last') or '0') + d * 1000 - now
  if wait > 0 then return {wait, n, g} end
end
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'last', now)
redis.call('EXPIRE', KEYS[1], ARGV[4])
if KEYS[2] then
  redis.call('HINCRBY', KEYS[2], 'n', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return {0, n, g}
