-- Session records (store/record.rs): MessagePack maps, or JSON objects written before the
-- MessagePack format ('{' first, which no MessagePack map starts with). A script writes a
-- record back in the format it read it in. Prepended to every script that reads records.
local function decode_record(raw)
  if string.byte(raw, 1) == 123 then return cjson.decode(raw), false end
  return cmsgpack.unpack(raw), true
end
local function encode_record(rec, packed)
  if packed then return cmsgpack.pack(rec) end
  -- cjson escapes '/' as '\/'; undo it (a literal backslash is encoded as '\\', so only
  -- escaped slashes match) to keep the record as small as it was written.
  return (string.gsub(cjson.encode(rec), '\\/', '/'))
end
