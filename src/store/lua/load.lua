-- Load a session, refusing one whose user has moved on: a record stamped with a credential
-- version below the user's current one is dead whether or not a revoke-all found it (the user
-- index may be missing: erased, lost, never written). One round trip, no JSON decoding.
-- KEYS[1] session key; ARGV[1] credential-version key prefix of this tag ('tsr:v:{tag}:').
-- Returns the record, or false.
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local user = string.match(raw, '"u":"([^"]*)"')
if not user then return raw end -- not ours to judge here; the decoder refuses it
local stamped = tonumber(string.match(raw, '"cv":(%d+)') or '0')
local current = tonumber(redis.call('GET', ARGV[1] .. user) or '0')
if stamped < current then return false end
return raw
