-- One round trip for the matching data of many doctors (their hashes share the slot).
-- KEYS: the doctors' profile hashes. ARGV[1]: JSON {"fields": [field names]}.
-- Returns JSON: per key, an object of field name -> value (false when absent).
local fields = cjson.decode(ARGV[1]).fields
local rows = {}
for i, key in ipairs(KEYS) do
  local values = redis.call('HMGET', key, unpack(fields))
  local row = {}
  for j, name in ipairs(fields) do row[name] = values[j] end
  rows[i] = row
end
return cjson.encode(rows)
