-- The matching rows of many doctors in one call (see DirectoryStore.text_rows), each kept
-- under trow:<id> as its profile's fields joined by \31 (lat, lon, radius_km, rating,
-- review_count, tz, prefs: the texts DirectoryStore wrote, nothing formatted here), so a
-- row is one string read by MGET; the first call that meets a doctor joins the fields,
-- and every save drops the row in the same commit as the fields change.
-- KEYS[1]: names the directory's slot (every key read shares it). ARGV[1]: the key
-- prefix; ARGV[2]: JSON [doctor id, ...]. Returns per doctor the row, or false for one
-- gone (no place).
local prefix = ARGV[1]
local ids = cjson.decode(ARGV[2])
local FIELDS = {'lat', 'lon', 'radius_km', 'rating', 'review_count', 'tz', 'prefs'}
local keys = {}
for i = 1, #ids do keys[i] = prefix .. ':trow:' .. ids[i] end
local rows = redis.call('MGET', unpack(keys))
for i = 1, #ids do
  if not rows[i] then
    local v = redis.call('HMGET', prefix .. ':doc:' .. ids[i], unpack(FIELDS))
    if v[1] and v[2] and v[1] ~= '' and v[2] ~= '' then
      for j = 3, 7 do v[j] = v[j] or '' end
      local row = table.concat(v, '\31', 1, 7)
      redis.call('SET', keys[i], row)
      rows[i] = row
    end
  end
end
return rows
