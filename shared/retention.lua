-- Trim one stream toward a length, never past an entry some consumer group has yet to
-- read (its oldest pending entry, or the first after the last it was given), unless the
-- stream is over a hard byte ceiling; a forced trim is counted in the stream's record.
--
-- KEYS[1] the stream, KEYS[2] its retention record (a hash)
-- ARGV[1] entries to keep, ARGV[2] byte ceiling, ARGV[3] now in ms
-- Returns {outcome, entries removed, unread entries removed, floor id or ''}.

local stream, record = KEYS[1], KEYS[2]
local maxlen, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function older(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local length = redis.call('XLEN', stream)
if length == 0 then
  return {'empty', 0, 0, ''}
end

local floor = nil
for _, fields in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local group = {}
  for i = 1, #fields, 2 do
    group[fields[i]] = fields[i + 1]
  end
  local ms, seq = parse(group['last-delivered-id'])
  local needed = string.format('%.0f-%.0f', ms, seq + 1)
  if group['pending'] > 0 then
    local oldest = redis.call('XPENDING', stream, group['name'])[2]
    if older(oldest, needed) then
      needed = oldest
    end
  end
  if floor == nil or older(needed, floor) then
    floor = needed
  end
end

-- How many of the oldest `limit` entries every group is done with.
local function read_by_all(limit)
  if floor == nil then
    return limit
  end
  return #redis.call('XRANGE', stream, '-', '(' .. floor, 'COUNT', limit)
end

local usage = redis.call('MEMORY', 'USAGE', stream, 'SAMPLES', 5) or 0
if usage > max_bytes then
  local keep = math.floor(length * max_bytes / usage * 0.9)
  local safe = read_by_all(length - keep)
  local removed = redis.call('XTRIM', stream, 'MAXLEN', keep)
  local lost = math.max(0, removed - safe)
  if lost > 0 then
    redis.call('HINCRBY', record, 'forced_trims', 1)
    redis.call('HINCRBY', record, 'unread_trimmed', lost)
    redis.call('HSET', record, 'last_forced_ms', ARGV[3])
  end
  return {'ceiling', removed, lost, floor or ''}
end

if length <= maxlen then
  return {'kept', 0, 0, floor or ''}
end
local excess = length - maxlen
local safe = read_by_all(excess)
if safe >= excess then
  return {'maxlen', redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen), 0, floor or ''}
end
if safe == 0 then
  return {'held', 0, 0, floor}
end
return {'minid', redis.call('XTRIM', stream, 'MINID', '~', floor), 0, floor}
