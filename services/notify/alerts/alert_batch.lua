-- Alerts the matched doctors of a whole batch of questions in one call (see
-- AlertStore.alert_batch). Per question: keep who asked, freeze its matches (a redelivery
-- alerts the same doctors), start its escalation clock; per matched doctor, the same
-- guarded change AlertService._plan_alert commits when an alert goes out now: the
-- once-guard, the inbox item and its indexes (none while a moderator hides the question:
-- inbox/moderate.lua), the notification-sent event, the outbox
-- entry, the day's count. What this script does not decide it leaves untouched and hands
-- back (`defer`): an alert that would be held (quiet hours, daily cap: alerts.domain
-- .goes_out_now is the rule mirrored here), a zone it has no clock for, or a question
-- whose frozen matches differ from this search. Python then runs the full path.
-- KEYS[1]: the notification-sent stream; KEYS[2]: the outbox stream; KEYS[3]: the
-- escalation due index; every other key shares their slot and is named from `tag`.
-- ARGV[1]: JSON {tag, now_ms, created_at, occurred_at, nonce, uuid_prefix,
--   zones = {zone: {day, minute}} ('' is UTC), ttl = {dedupe, inbox, question, day, esc},
--   email, escalate}
-- ARGV[2 + 3(i-1)]: question i, JSON {id, title, asker, corr, red_flags (JSON text), due_ms,
-- kept, trace? (its event's traceparent, which its outbox entries carry)};
-- ARGV[3 + 3(i-1)]: its matches (JSON, as frozen); ARGV[4 + 3(i-1)]: its doctors (JSON,
-- {id: {tz, prefs}} with prefs an object, as matching/batch.py writes them).
-- Returns per question {status ('ok' | 'slow'), delivered, duplicates, deferred,
-- unknown zones (comma-joined), recipients (comma-joined)}.

local stream, outbox, esc_due = KEYS[1], KEYS[2], KEYS[3]
local h = cjson.decode(ARGV[1])
local tag, ttl = h.tag, h.ttl
local null = cjson.null
local counter = 0
local batch_seq = redis.call('INCR', tag .. ':nid-batch') % 16777216
local created_at, occurred_at = cjson.encode(h.created_at), cjson.encode(h.occurred_at)

local function arg(x)
  -- a number as redis.call would pass it ('%.17g'), converted once, not on every call
  return string.format('%.17g', x)
end
local ttl_dedupe, ttl_inbox, ttl_day = arg(ttl.dedupe), arg(ttl.inbox), arg(ttl.day)

local expired = {}
-- the escalation due index's entries of the whole call: score, question id, ...
local due = {}
local function expire_once(key, seconds)
  -- time stands still inside a script (Redis >= 7.0), so a second EXPIRE of a key with the
  -- same TTL in this call would set the very same instant: one per key is enough
  if not expired[key] then
    expired[key] = true
    redis.call('EXPIRE', key, seconds)
  end
end

local function present(v)
  return v ~= nil and v ~= null
end

local function minutes(text)
  -- 'HH:MM' (24-hour) as minutes after midnight; nil when malformed
  if type(text) ~= 'string' then return nil end
  local hh, mm = string.match(text, '^%s*(%d%d):(%d%d)%s*$')
  if not hh then return nil end
  hh, mm = tonumber(hh), tonumber(mm)
  if hh > 23 or mm > 59 then return nil end
  return hh * 60 + mm
end

local function quiet_now(start, stop, minute)
  -- domain.QuietHours.contains at a whole local minute (the window's ends are whole)
  if start <= stop then return start <= minute and minute < stop end
  return minute >= start or minute < stop
end

local function goes_out_now(prefs, day_key)
  -- alerts.domain.goes_out_now: true, false (held) or nil with a reason (no clock here);
  -- the day's count is read only where there is a cap to hold it against
  local cap = prefs.daily_cap
  if present(cap) and tonumber(redis.call('GET', day_key) or '0') >= cap then return false end
  local qh = prefs.quiet_hours
  if not present(qh) then return true end
  local start, stop = minutes(qh.start), minutes(qh['end'])
  if not start or not stop or type(qh.tz) ~= 'string' then return nil, 'bad' end
  local clock = h.zones[qh.tz]
  if not clock then return nil, qh.tz end
  return not quiet_now(start, stop, clock.minute)
end

local function g(x)
  -- Python's f'{x:g}'
  return string.format('%g', x)
end

-- What repeats from alert to alert is written once per call: a specialty as JSON (and
-- inside a JSON string), a rank, a search radius as the reason and its text show it.
local specialties, ranks, radii = {}, {}, {}
local function specialty_json(specialty)
  local json = specialties[specialty]
  if not json then
    json = cjson.encode(specialty)
    specialties[specialty] = json
  end
  return json, string.sub(json, 2, -2)
end

local function json_string(text)
  -- cjson.encode(text), without a C call where nothing needs escaping (most ids)
  if string.find(text, '[%c"\\/]') then return cjson.encode(text) end
  return '"' .. text .. '"'
end

local function rank_text(rank)
  local text = ranks[rank]
  if not text then
    text = tostring(rank)
    ranks[rank] = text
  end
  return text
end

local function radius_texts(radius_used_km)
  -- round(radius, 1) as a JSON number (cjson's %.14g) and as f'{x:g}'
  local texts = radii[radius_used_km]
  if not texts then
    local radius = tonumber(string.format('%.1f', radius_used_km))
    texts = {tostring(radius), g(radius)}
    radii[radius_used_km] = texts
  end
  return texts[1], texts[2]
end

local function reason_of(m)
  -- matching.domain.Match.reason (as JSON: a number reads as cjson writes it, %.14g) and
  -- reason_text (a first alert, not an escalation) as a JSON string, the bytes cjson
  -- writes (it leaves non-ASCII as it is)
  local specialty, inner = specialty_json(m.specialty)
  local rank = rank_text(m.rank)
  if m.located == false then
    return '{"specialty":' .. specialty .. ',"distance_km":null,"rank":' .. rank
      .. ',"widened":false,"radius_km":null,"basis":"specialty_and_rating"}',
      '"' .. inner .. ' · rank ' .. rank .. ' · asker gave no location"'
  end
  local radius, radius_g = radius_texts(m.radius_used_km)
  local distance = m.distance_km
  local text = '"' .. inner .. ' · ' .. g(distance) .. ' km · rank ' .. rank
  if m.widened then
    text = text .. ' · search widened to ' .. radius_g .. ' km"'
  else
    text = text .. '"'
  end
  return '{"specialty":' .. specialty .. ',"distance_km":' .. distance .. ',"rank":'
    .. rank .. ',"widened":' .. tostring(m.widened) .. ',"radius_km":' .. radius .. '}', text
end

-- inbox.domain.new_notification_id ('n' + 12 hex ms + 12 hex): the batch's number from a
-- shared counter makes ids unique across replicas, the count within the batch
local nid_head = string.format('n%012x%06x', h.now_ms, batch_seq)
local function new_ids()
  counter = counter + 1
  local count = string.format('%06x', counter)
  return nid_head .. count, h.uuid_prefix .. count
end

local function external(prefs)
  -- InboxService._external
  local out = {}
  if type(prefs.channels) ~= 'table' then return out end
  local channels = prefs.channels
  for i = 1, #channels do
    local c = channels[i]
    if c == 'webhook' or (c == 'email' and h.email) then out[#out + 1] = c end
  end
  return out
end

local function deliver(q, m, prefs, nid, event_id, day_key)
  -- AlertChange().once(...).notify(note).count_sent(...), as AlertStore commits it (the
  -- once-guard is set by the caller). The item and the event are written from the
  -- question's parts, encoded once per question.
  local reason, text = reason_of(m)
  local ext = external(prefs)
  local channels = '["inbox","stream"'
  for _, c in ipairs(ext) do channels = channels .. ',"' .. c .. '"' end
  local item = '{"id":"' .. nid .. q.item_head .. reason .. ',"reason_text":' .. text
    .. q.item_tail .. text .. '}'
  local event = '{"event_id":"' .. event_id .. q.event_head .. nid .. '","recipient_id":'
    .. json_string(m.doctor_id) .. q.event_kind .. channels .. '],"reason":' .. reason
    .. ',"urgent":false}'
  local note = tag .. ':n:' .. nid
  -- InboxStore.add's index of the question's items: one ZADD per question (alert_question)
  q.about_nids[#q.about_nids + 1] = nid
  if #ext == 0 then
    redis.call('HSET', note, 'item', item, 'recipient', m.doctor_id, 'read', '0',
      'd:inbox', 'delivered')
  else
    local status = {'d:inbox', 'delivered'}
    for _, c in ipairs(ext) do
      status[#status + 1] = 'd:' .. c
      status[#status + 1] = 'pending'
    end
    redis.call('HSET', note, 'item', item, 'recipient', m.doctor_id, 'read', '0', unpack(status))
  end
  redis.call('EXPIRE', note, ttl_inbox)
  -- InboxStore.add: an item about a question a moderator hid is kept out of the indexes
  if q.hidden then
    redis.call('HSET', note, 'hidden', '1')
  else
    local inbox, unread = tag .. ':inbox:' .. m.doctor_id, tag .. ':unread:' .. m.doctor_id
    redis.call('ZADD', inbox, '0', nid)
    expire_once(inbox, ttl_inbox)
    redis.call('ZADD', unread, '0', nid)
    expire_once(unread, ttl_inbox)
  end
  redis.call('XADD', stream, '*', '__data__', event)
  if #ext > 0 then
    -- the question's trace context, as the full path's entry carries it: delivery joins it
    local trace = type(q.trace) == 'string' and {'traceparent', q.trace} or {}
    redis.call('XADD', outbox, '*', 'nid', nid, 'recipient', m.doctor_id, 'channels',
      table.concat(ext, ','), unpack(trace))
  end
  redis.call('INCRBY', day_key, '1')
  expire_once(day_key, ttl_day)
end

local function alert_question(q, matches_json, doctors_json)
  local id_j = cjson.encode(q.id)
  -- the parts of every item and event of this question that are the same for each doctor
  q.item_head = '","kind":"question-match","question_id":' .. id_j
    .. ',"answer_id":null,"created_at":' .. created_at .. ',"urgent":false,"reason":'
  q.item_tail = ',"title":' .. cjson.encode(q.title) .. ',"red_flags":' .. q.red_flags
    .. ',"summary":'
  q.event_head = '","event_type":"notification-sent","schema_version":1,"occurred_at":'
    .. occurred_at .. ',"correlation_id":' .. cjson.encode(q.corr)
    .. ',"producer":"notify","notification_id":"'
  q.event_kind = ',"kind":"question-match","question_id":' .. id_j
    .. ',"answer_id":null,"channels":'
  q.about, q.about_nids = tag .. ':about:q:' .. q.id, {}
  q.hidden = redis.call('EXISTS', tag .. ':hidden:q:' .. q.id) == 1
  local qkey = tag .. ':q:' .. q.id
  redis.call('HSET', qkey, 'asker_id', q.asker, 'title', q.title)
  redis.call('EXPIRE', qkey, arg(ttl.question))
  if h.escalate then
    local esc = tag .. ':esc:' .. q.id
    redis.call('HSETNX', esc, 'question', q.kept)
    redis.call('EXPIRE', esc, arg(ttl.esc))
    -- the due index takes the whole call's questions in one ZADD (at the end)
    due[#due + 1] = arg(q.due_ms)
    due[#due + 1] = q.id
  end
  local frozen = tag .. ':matches:' .. q.id
  if not redis.call('SET', frozen, matches_json, 'NX', 'EX', ttl_dedupe) then
    if redis.call('GET', frozen) ~= matches_json then return {'slow', 0, 0, 0, '', ''} end
  end
  local doctors = cjson.decode(doctors_json)
  local delivered, duplicates, deferred = 0, 0, 0
  local zones, recipients = {}, {}
  local matches = cjson.decode(matches_json)
  for i = 1, #matches do
    local m = matches[i]
    local row = doctors[m.doctor_id]
    -- a doctor gone from the directory since is left out, as AlertService.alert_matches does
    if row ~= nil then
      local guard = tag .. ':once:qm:' .. q.id .. ':' .. m.doctor_id
      local prefs = row.prefs
      local clock = h.zones[row.tz]
      local now, why = nil, row.tz
      local day_key
      if clock then
        day_key = tag .. ':sent:' .. m.doctor_id .. ':' .. clock.day
        now, why = goes_out_now(prefs, day_key)
      end
      if now then
        -- the once-guard is checked and set in one command: only a first alert sets it
        local nid, event_id = new_ids()
        if redis.call('SET', guard, nid, 'NX', 'EX', ttl_dedupe) then
          deliver(q, m, prefs, nid, event_id, day_key)
          delivered = delivered + 1
          recipients[#recipients + 1] = m.doctor_id
        else
          duplicates = duplicates + 1
        end
      elseif redis.call('EXISTS', guard) == 1 then
        duplicates = duplicates + 1
      else
        deferred = deferred + 1
        if now == nil and why ~= 'bad' then zones[#zones + 1] = why end
      end
    end
  end
  local nids = q.about_nids
  if #nids > 0 then
    local members = {}
    for i = 1, #nids do
      members[2 * i - 1] = '0'
      members[2 * i] = nids[i]
    end
    redis.call('ZADD', q.about, unpack(members))
    expire_once(q.about, ttl_inbox)
  end
  return {'ok', delivered, duplicates, deferred, table.concat(zones, ','),
          table.concat(recipients, ',')}
end

local replies = {}
for i = 2, #ARGV, 3 do
  replies[#replies + 1] = alert_question(cjson.decode(ARGV[i]), ARGV[i + 1], ARGV[i + 2])
end
if #due > 0 then redis.call('ZADD', esc_due, 'NX', unpack(due)) end
return replies
