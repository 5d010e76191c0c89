-- Session records (store/record.rs): MessagePack maps, or JSON objects written before the
-- MessagePack format ('{' first, which no MessagePack map starts with). A script writes a
-- record back in the format it read it in. Prepended to every script that reads records.
--
-- A value that does not decode to a record with the fields scripts rely on (corrupt, or
-- written by something else) is treated as no session: nil, never a script error (a 500).
local function decode_record(raw)
  local packed = string.byte(raw, 1) ~= 123
  local ok, rec
  if packed then
    ok, rec = pcall(cmsgpack.unpack, raw)
  else
    ok, rec = pcall(cjson.decode, raw)
  end
  if not ok or type(rec) ~= 'table' or type(rec.u) ~= 'string' or type(rec.sh) ~= 'string'
    or not tonumber(rec.ls) or not tonumber(rec.ie) or not tonumber(rec.ae) then
    return nil, packed
  end
  return rec, packed
end
local function encode_record(rec, packed)
  if packed then return cmsgpack.pack(rec) end
  -- cjson escapes '/' as '\/'; undo it (a literal backslash is encoded as '\\', so only
  -- escaped slashes match) to keep the record as small as it was written.
  return (string.gsub(cjson.encode(rec), '\\/', '/'))
end
