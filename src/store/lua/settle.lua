-- A reserved guess was right: take its reservation back.
-- KEYS[1] the counter to clear (or to decrement, with ARGV[1] = 'decrement'), KEYS[2]
-- (optional) a wider counter to decrement. Counts never go below 0.
local function decrement(key)
  if tonumber(redis.call('HGET', key, 'n') or '0') > 0 then
    redis.call('HINCRBY', key, 'n', -1)
  end
end
if ARGV[1] == 'decrement' then decrement(KEYS[1]) else redis.call('DEL', KEYS[1]) end
if KEYS[2] then decrement(KEYS[2]) end
return 1
