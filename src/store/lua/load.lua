-- Load a session, refusing one whose user has moved on: a record stamped with a credential
-- version below the user's current one is dead whether or not a revoke-all found it (the user
-- index may be missing: erased, lost, never written). One round trip, no JSON decoding.
-- KEYS[1] session key; ARGV[1] credential-version key prefix of this tag ('tsr:v:{tag}:').
-- Returns {record, user id as matched}, or false. The caller checks that the decoded record
-- names that same user: a record spelled in any other way than Tessera writes it (escapes,
-- spaces, duplicate fields) fails closed instead of slipping past the version check.
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
-- (Scripts that rewrite a record with cjson may reorder its fields, so no anchor on position;
-- a quote inside a value is always escaped, so `"u":"` cannot match inside one.)
local user = string.match(raw, '[{,]"u":"([%w%._@:%-]+)"[,}]')
if not user then return false end
local stamped = tonumber(string.match(raw, '[{,]"cv":(%d+)[,}]') or '0')
local current = tonumber(redis.call('GET', ARGV[1] .. user) or '0')
if stamped < current then return false end
return {raw, user}
