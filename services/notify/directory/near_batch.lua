-- One ring of many questions' outward searches in one call (see DirectoryStore.near_batch):
-- per search, the `count` nearest doctors of each of its specialties within a radius,
-- nearest first.
-- KEYS: the geo indexes searched (every key shares the directory's slot).
-- ARGV[1]: JSON [[lon, lat, radius_km, count, [index in KEYS, ...]], ...]; the numbers
-- reach GEOSEARCH as redis.call writes them ('%.17g': the same doubles).
-- Returns per search, per specialty, the list of doctor ids.
local out = {}
for _, s in ipairs(cjson.decode(ARGV[1])) do
  local lon, lat, radius, count = s[1], s[2], s[3], s[4]
  for _, key in ipairs(s[5]) do
    out[#out + 1] = redis.call('GEOSEARCH', KEYS[key], 'FROMLONLAT', lon, lat, 'BYRADIUS', radius,
      'km', 'ASC', 'COUNT', count)
  end
end
return out
