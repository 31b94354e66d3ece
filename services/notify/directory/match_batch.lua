-- Matches a whole batch of questions to doctors in one call (see DirectoryStore.match_batch).
-- Mirrors, step for step, matching.service.search_rings with matching.domain.match_doctors
-- and RingSearch.next (a located question), and match_by_rating (no location); the
-- property test tests/integration/test_notify_batch.py holds the two to the same answers.
-- KEYS: the geo and rating indexes of every specialty the batch names (the doctors'
-- hashes share their slot and are read by name). ARGV[1]: JSON
--   {prefix, policy = {cap, min_matches, widen = [..], band_km},
--    rings = {first_km, limit_km, first_count, max_count, widen, deepen},
--    questions = [{lat?, lon?, sp = [slugs], ex = asker id}]}
-- Returns two strings per question: its matches as JSON (the form Match(**m) reads
-- back), and {doctor id: {tz, prefs}} of the matched doctors (prefs as an object).
-- Most of the time goes to the Lua interpreter, not to Redis: loops are numeric (an
-- ipairs step is a C call), each doctor is read and measured once, and the replies are
-- written as text rather than through tables and cjson.

local args = cjson.decode(ARGV[1])
local prefix, policy, rings = args.prefix, args.policy, args.rings
local EARTH_RADIUS_KM = 6371.0088
local FIELDS = {'lat', 'lon', 'radius_km', 'rating', 'review_count', 'tz', 'prefs'}
local sin, cos, asin, sqrt, min, floor = math.sin, math.cos, math.asin, math.sqrt, math.min,
  math.floor
local format, byte = string.format, string.byte
-- math.rad(x) is x * RADIANS_PER_DEGREE: the product Python's math.radians computes
local RAD = math.pi / 180.0
local widen, cap, min_matches, band_km = policy.widen, policy.cap, policy.min_matches,
  policy.band_km

local function bytes_lt(a, b)
  -- Python's str order (code points) whatever the server's collation locale
  local n = min(#a, #b)
  for i = 1, n do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function num(text)
  -- tonumber(text) or 0 for the numbers DirectoryStore writes (repr of a float, or an
  -- int): arithmetic reads the digits once where tonumber reads them twice
  if not text or text == '' then return 0 end
  return text * 1
end

-- A packed row: lat, lon, radius_km, rating, review_count and the length of tz as doubles
-- (struct), then tz, then prefs (JSON)
local ROW = '<dddddd'
local ROW_SIZE = 48

local function row_from_fields(id, key)
  -- the row from the profile's fields, kept packed for the next calls; false when gone
  local v = redis.call('HMGET', prefix .. ':doc:' .. id, unpack(FIELDS))
  if not v[1] or not v[2] or v[1] == '' or v[2] == '' then return false end
  local lat, lon = v[1] * 1, v[2] * 1
  local radius_km, rating, review_count = num(v[3]), num(v[4]), floor(num(v[5]))
  local tz, prefs = v[6] or '', v[7] or ''
  redis.call('SET', key, struct.pack(ROW, lat, lon, radius_km, rating, review_count, #tz)
    .. tz .. prefs)
  return {lat = lat, lon = lon, radius_km = radius_km, rating = rating,
          review_count = review_count, tz = tz, prefs = prefs}
end

local rows = {}
local function row_of(id)
  -- a doctor's matching row, read once per call: packed (doubles, nothing to parse) since
  -- the first call that read the profile's fields (DirectoryStore.save drops it with any
  -- change); false when gone (no place)
  local row = rows[id]
  if row == nil then
    local key = prefix .. ':mrow:' .. id
    local packed = redis.call('GET', key)
    if packed then
      local lat, lon, radius_km, rating, review_count, tz_size = struct.unpack(ROW, packed)
      row = {lat = lat, lon = lon, radius_km = radius_km, rating = rating,
             review_count = review_count, packed = packed, tz_size = tz_size}
    else
      row = row_from_fields(id, key)
    end
    if row then
      row.phi = row.lat * RAD
      row.cos_phi = cos(row.phi)
    end
    rows[id] = row
  end
  return row
end

local function tz_prefs(row)
  -- a matched doctor's zone and preferences (read out of the packed row only for them)
  local packed = row.packed
  if not packed then return row.tz, row.prefs end
  local tz_end = ROW_SIZE + row.tz_size
  return string.sub(packed, ROW_SIZE + 1, tz_end), string.sub(packed, tz_end + 1)
end

local counts = {}
local function count_arg(n)
  -- COUNT as redis.call would pass the number ('%.17g'), formatted once per call
  local text = counts[n]
  if not text then
    text = format('%.17g', n)
    counts[n] = text
  end
  return text
end

local function near(q, radius_km, count)
  -- DirectoryStore.near, keeping of each doctor's specialties only the first in the
  -- question's order (all that matching reads of them), in first seen order
  local sp = q.sp
  local found, order, size, truncated = {}, {}, 0, false
  local radius17, count17 = format('%.17g', radius_km), count_arg(count)
  for s = 1, #sp do
    local slug = sp[s]
    local ids = redis.call('GEOSEARCH', prefix .. ':geo:' .. slug, 'FROMLONLAT', q.lon17, q.lat17,
      'BYRADIUS', radius17, 'km', 'ASC', 'COUNT', count17)
    local n = #ids
    if n >= count then truncated = true end
    for i = 1, n do
      local id = ids[i]
      if not found[id] then
        found[id] = slug
        size = size + 1
        order[size] = id
      end
    end
  end
  return found, order, size, truncated
end

local function better(a, b)
  -- matching.domain.match_doctors's rank_key: band, best rated, most reviewed, nearest, id
  if a.band ~= b.band then return a.band < b.band end
  if a.rating ~= b.rating then return a.rating > b.rating end
  if a.review_count ~= b.review_count then return a.review_count > b.review_count end
  if a.distance_km ~= b.distance_km then return a.distance_km < b.distance_km end
  return bytes_lt(a.id, b.id)
end

local calls = 0
local function match_doctors(cands)
  -- matching.domain.match_doctors (candidates are one per doctor already). A chosen
  -- candidate carries this call's number, its radius and whether it was widened to;
  -- only the best `cap` are kept, in a sorted window they enter by insertion (the order
  -- is total, ids break ties, so the window holds what a full sort would put first).
  -- Returns the window and its length.
  calls = calls + 1
  local call, n, total = calls, 0, #cands
  for i = 1, total do
    local c = cands[i]
    if c.distance_km <= c.radius_km then
      c.chosen, c.widened, c.radius = call, false, c.radius_km
      n = n + 1
    end
  end
  for f = 1, #widen do
    if n >= min_matches then break end
    local factor = widen[f]
    for i = 1, total do
      local c = cands[i]
      local radius = c.radius_km * factor
      if c.chosen ~= call and c.distance_km <= radius then
        c.chosen, c.widened, c.radius = call, true, radius
        n = n + 1
      end
    end
  end
  local best, kept = {}, 0
  for i = 1, total do
    local c = cands[i]
    if c.chosen == call then
      local at
      if kept < cap then
        kept = kept + 1
        at = kept
      elseif cap > 0 and better(c, best[kept]) then
        at = kept
      end
      if at then
        while at > 1 and better(c, best[at - 1]) do
          best[at] = best[at - 1]
          at = at - 1
        end
        best[at] = c
      end
    end
  end
  return best, kept
end

local function search_rings(q)
  -- matching.service.search_rings with RingSearch.next; the chosen candidates, best first
  local seen = {}
  local radius_km, count = rings.first_km, rings.first_count
  local at_limit = radius_km >= rings.limit_km
  local ex, q_lon, q_phi, q_cos_phi = q.ex, q.lon, q.phi, q.cos_phi
  while true do
    local found, order, size, truncated = near(q, radius_km * 1.01, count)
    local cands, n = {}, 0
    for i = 1, size do
      local id = order[i]
      -- each doctor is measured once per question, however many rings find them
      local c = seen[id]
      if c == nil then
        local row = rows[id]
        if row == nil then row = row_of(id) end
        c = false
        if row and id ~= ex then
          -- shared.geo.haversine_km(q.lat, q.lon, row.lat, row.lon), operation for operation
          -- (same libm, same doubles), inline (it runs for every doctor a question meets);
          -- each end's radians and cosine are computed once, by the question and the row
          local dlambda = (row.lon - q_lon) * RAD
          local h = sin((row.phi - q_phi) / 2) ^ 2
            + q_cos_phi * row.cos_phi * sin(dlambda / 2) ^ 2
          local distance = 2 * EARTH_RADIUS_KM * asin(min(1.0, sqrt(h)))
          c = {id = id, distance_km = distance, radius_km = row.radius_km,
               rating = row.rating, review_count = row.review_count,
               band = floor(distance / band_km)}
        end
        seen[id] = c
      end
      if c and (c.distance_km <= radius_km or at_limit) then
        -- this ring may find them under more of the question's specialties
        c.specialty = found[id]
        n = n + 1
        cands[n] = c
      end
    end
    -- Whether this ring's matches are complete (cap of them, none widened), known without
    -- ranking them unless there are enough doctors in their own radius to fill the cap but
    -- too few to stop the widening (cap < min_matches): only the last ring is ranked.
    local inside = 0
    for i = 1, n do
      local c = cands[i]
      if c.distance_km <= c.radius_km then inside = inside + 1 end
    end
    local complete, best, kept
    if inside >= min_matches or inside < cap then
      complete = inside >= cap
    else
      best, kept = match_doctors(cands)
      complete = kept >= cap
      for i = 1, kept do
        if best[i].widened then complete = false end
      end
    end
    local deeper = truncated and count < rings.max_count
    if complete or (at_limit and not deeper) then
      if not best then best, kept = match_doctors(cands) end
      return best, kept
    end
    if deeper then
      count = min(count * rings.deepen, rings.max_count)
    else
      radius_km = min(radius_km * rings.widen, rings.limit_km)
      at_limit = radius_km >= rings.limit_km
    end
  end
end

local function match_by_rating(q)
  -- DirectoryStore.best_rated, then matching.domain.match_by_rating
  local sp = q.sp
  local found, order = {}, {}
  for s = 1, #sp do
    local slug = sp[s]
    local ids = redis.call('ZRANGE', prefix .. ':rated:' .. slug, '0',
      count_arg(rings.first_count - 1), 'REV')
    for i = 1, #ids do
      local id = ids[i]
      if not found[id] then
        found[id] = slug
        order[#order + 1] = id
      end
    end
  end
  local list = {}
  for i = 1, #order do
    local id = order[i]
    local row = row_of(id)
    if row and id ~= q.ex then
      list[#list + 1] = {id = id, specialty = found[id], rating = row.rating,
                         review_count = row.review_count}
    end
  end
  table.sort(list, function(a, b)
    if a.rating ~= b.rating then return a.rating > b.rating end
    if a.review_count ~= b.review_count then return a.review_count > b.review_count end
    return bytes_lt(a.id, b.id)
  end)
  return list, min(#list, cap)
end

local function text(s)
  -- a JSON string as cjson writes it (ids and slugs rarely need escaping)
  if string.find(s, '[%c"\\/\127-\255]') then return cjson.encode(s) end
  return '"' .. s .. '"'
end

local function memo(f)
  -- f(x), computed once per call for each x (slugs, zones, ranks, radii repeat)
  local known = {}
  return function(x)
    local y = known[x]
    if y == nil then
      y = f(x)
      known[x] = y
    end
    return y
  end
end

local function number(x)
  -- a JSON number as cjson writes it
  return format('%.14g', x)
end

local function km(x)
  -- Python's round(x, 1) as cjson writes it: printf rounds the exact binary value, half to
  -- even, as round does; and %.14g of a number with one decimal is its %.1f without a
  -- trailing '.0', so one format does what formatting the rounded number again did
  local t = format('%.1f', x)
  if byte(t, -1) == 48 and byte(t, -2) == 46 then t = string.sub(t, 1, -3) end
  return t
end

local slug_text, zone_text, rank_text, radius_text = memo(text), memo(text), memo(tostring),
  memo(number)

-- The matches are written in Match's field order, numbers and strings as cjson writes
-- them: the same question matched again gives the same text (a redelivery compares it
-- with the frozen one). Fields at Match's defaults (located, no escalation) are left out:
-- less to write, store and decode.
local reply = {}
for i = 1, #args.questions do
  local q = args.questions[i]
  local list, kept, located
  if q.lat then
    q.phi = q.lat * RAD
    q.cos_phi = cos(q.phi)
    q.lat17, q.lon17 = format('%.17g', q.lat), format('%.17g', q.lon)
    list, kept = search_rings(q)
    located = true
  else
    list, kept = match_by_rating(q)
    located = false
  end
  local matches, doctors = {}, {}
  for rank = 1, kept do
    local c = list[rank]
    local distance, widened, radius = '0', 'false', '0'
    if located then
      distance = km(c.distance_km)
      widened = c.widened and 'true' or 'false'
      radius = radius_text(c.radius)
    end
    local id = text(c.id)
    matches[rank] = '{"doctor_id":' .. id .. ',"specialty":' .. slug_text(c.specialty)
      .. ',"distance_km":' .. distance .. ',"rank":' .. rank_text(rank) .. ',"widened":' .. widened
      .. ',"radius_used_km":' .. radius .. (located and '}' or ',"located":false}')
    local tz, prefs = tz_prefs(rows[c.id])
    -- prefs are JSON already: kept as they are, the alerts' script decodes them once
    if prefs == '' then prefs = '{}' end
    doctors[rank] = id .. ':{"tz":' .. zone_text(tz) .. ',"prefs":' .. prefs .. '}'
  end
  reply[#reply + 1] = '[' .. table.concat(matches, ',') .. ']'
  reply[#reply + 1] = '{' .. table.concat(doctors, ',') .. '}'
end
return reply
