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
-- back), and {doctor id: {tz, prefs}} of the matched doctors.

local args = cjson.decode(ARGV[1])
local prefix, policy, rings = args.prefix, args.policy, args.rings
local EARTH_RADIUS_KM = 6371.0088
local FIELDS = {'lat', 'lon', 'radius_km', 'rating', 'review_count', 'tz', 'prefs'}

local function haversine_km(a_lat, a_lon, b_lat, b_lon)
  -- shared.geo.haversine_km, operation for operation (same libm, same doubles)
  local phi1, phi2 = math.rad(a_lat), math.rad(b_lat)
  local dphi = phi2 - phi1
  local dlambda = math.rad(b_lon - a_lon)
  local h = math.sin(dphi / 2) ^ 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ^ 2
  return 2 * EARTH_RADIUS_KM * math.asin(math.min(1.0, math.sqrt(h)))
end

local function round1(x)
  -- Python's round(x, 1): printf rounds the exact binary value, half to even, as it does
  return tonumber(string.format('%.1f', x))
end

local function bytes_lt(a, b)
  -- Python's str order (code points) whatever the server's collation locale
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function num(text)
  return tonumber(text) or 0
end

local rows = {}
local function row_of(id)
  -- a doctor's matching row, read once per call; false when gone (no place)
  local row = rows[id]
  if row == nil then
    local v = redis.call('HMGET', prefix .. ':doc:' .. id, unpack(FIELDS))
    if not v[1] or not v[2] or v[1] == '' or v[2] == '' then
      row = false
    else
      row = {lat = tonumber(v[1]), lon = tonumber(v[2]), radius_km = num(v[3]),
             rating = num(v[4]), review_count = math.floor(num(v[5])),
             tz = v[6] or '', prefs = v[7] or ''}
    end
    rows[id] = row
  end
  return row
end

local function g17(x)
  return string.format('%.17g', x)
end

local function near(sp, lat, lon, radius_km, count)
  -- DirectoryStore.near, keeping of each doctor's specialties only the first in the
  -- question's order (all that matching reads of them), in first seen order
  local found, order, truncated = {}, {}, false
  local lon17, lat17, radius17 = g17(lon), g17(lat), g17(radius_km)
  for _, slug in ipairs(sp) do
    local ids = redis.call('GEOSEARCH', prefix .. ':geo:' .. slug, 'FROMLONLAT', lon17, lat17,
      'BYRADIUS', radius17, 'km', 'ASC', 'COUNT', count)
    if #ids >= count then truncated = true end
    for _, id in ipairs(ids) do
      if not found[id] then
        found[id] = slug
        order[#order + 1] = id
      end
    end
  end
  return found, order, truncated
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
  calls = calls + 1
  local call, n = calls, 0
  for _, c in ipairs(cands) do
    if c.distance_km <= c.radius_km then
      c.chosen, c.widened, c.radius = call, false, c.radius_km
      n = n + 1
    end
  end
  for _, factor in ipairs(policy.widen) do
    if n >= policy.min_matches then break end
    for _, c in ipairs(cands) do
      local radius = c.radius_km * factor
      if c.chosen ~= call and c.distance_km <= radius then
        c.chosen, c.widened, c.radius = call, true, radius
        n = n + 1
      end
    end
  end
  local best, kept, cap = {}, 0, policy.cap
  for _, c in ipairs(cands) do
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
  local matches = {}
  for rank = 1, kept do
    local c = best[rank]
    matches[rank] = {doctor_id = c.id, specialty = c.specialty,
                     distance_km = round1(c.distance_km), rank = rank,
                     widened = c.widened, radius_used_km = c.radius, located = true,
                     escalation = 0, waited = ''}
  end
  return matches
end

local function search_rings(q)
  -- matching.service.search_rings with RingSearch.next
  local seen = {}
  local ring = {radius_km = rings.first_km, count = rings.first_count,
                at_limit = rings.first_km >= rings.limit_km}
  while true do
    local found, order, truncated = near(q.sp, q.lat, q.lon, ring.radius_km * 1.01, ring.count)
    local cands = {}
    for _, id in ipairs(order) do
      -- each doctor is measured once per question, however many rings find them
      local c = seen[id]
      if c == nil then
        local row = row_of(id)
        c = false
        if row and id ~= q.ex then
          local distance = haversine_km(q.lat, q.lon, row.lat, row.lon)
          c = {id = id, distance_km = distance, radius_km = row.radius_km,
               rating = row.rating, review_count = row.review_count,
               band = math.floor(distance / policy.band_km)}
        end
        seen[id] = c
      end
      if c and (c.distance_km <= ring.radius_km or ring.at_limit) then
        -- this ring may find them under more of the question's specialties
        c.specialty = found[id]
        cands[#cands + 1] = c
      end
    end
    local matches = match_doctors(cands)
    local complete = #matches >= policy.cap
    if complete then
      for _, m in ipairs(matches) do
        if m.widened then complete = false end
      end
    end
    local deeper = truncated and ring.count < rings.max_count
    if complete or (ring.at_limit and not deeper) then return matches end
    if deeper then
      ring = {radius_km = ring.radius_km, count = math.min(ring.count * rings.deepen,
              rings.max_count), at_limit = ring.at_limit}
    else
      local radius = math.min(ring.radius_km * rings.widen, rings.limit_km)
      ring = {radius_km = radius, count = ring.count, at_limit = radius >= rings.limit_km}
    end
  end
end

local function match_by_rating(q)
  -- DirectoryStore.best_rated, then matching.domain.match_by_rating
  local found, order = {}, {}
  for _, slug in ipairs(q.sp) do
    local ids = redis.call('ZRANGE', prefix .. ':rated:' .. slug, 0, rings.first_count - 1, 'REV')
    for _, id in ipairs(ids) do
      if not found[id] then
        found[id] = slug
        order[#order + 1] = id
      end
    end
  end
  local list = {}
  for _, id in ipairs(order) do
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
  local matches = {}
  for rank = 1, math.min(#list, policy.cap) do
    local c = list[rank]
    matches[rank] = {doctor_id = c.id, specialty = c.specialty, distance_km = 0.0, rank = rank,
                     widened = false, radius_used_km = 0.0, located = false, escalation = 0,
                     waited = ''}
  end
  return matches
end

local reply = {}
for _, q in ipairs(args.questions) do
  local matches
  if q.lat then matches = search_rings(q) else matches = match_by_rating(q) end
  local doctors = {}
  for _, m in ipairs(matches) do
    local row = row_of(m.doctor_id)
    doctors[m.doctor_id] = {tz = row.tz, prefs = row.prefs}
  end
  -- cjson writes an empty table as {}: an empty match list must read back as a list
  reply[#reply + 1] = #matches > 0 and cjson.encode(matches) or '[]'
  reply[#reply + 1] = cjson.encode(doctors)
end
return reply
