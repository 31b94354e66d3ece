-- The moderation queue projection of the questions service, from item-flagged and
-- moderation-decided (see store.py). One call per event, idempotent by its event id.
-- KEYS: 1 the event's marker, 2 the item's hash, 3 the open queue (zset),
--       4 the hidden list (zset), 5 the item's notes (list), 6 the kind's visibility hash,
--       7 the question's page version (a decision changes what its page shows),
--       8 the visibility version (every applied decision: caches of any page or list drop
--         what they hold, since a hidden or restored question leaves or joins others' lists),
--       9 the visibility signal (a stream of one entry, appended to with each bump: the
--         processes holding long polls of the version block on it instead of polling).
-- ARGV[1]: JSON {event = 'flag'|'decision'|'dismiss', member, kind, item_id, question_id,
--   at_ms, marker_ttl_s, retention_s (how long an entry in neither list is kept), and for a
--   flag: flag_count, counts (JSON text), first_ms, note?, notes_kept; for a decision:
--   version, decision, reason; for a dismissal: by}.
-- A dismissal is no event but an admin's call: the flags counted so far are dealt with
-- (dismissed_count), so the item leaves the open queue until a flag counts past them.
-- Returns 1 when applied, 0 for an event seen before; for a dismissal, the flag count it
-- dismissed up to (0: the item was never flagged).

local a = cjson.decode(ARGV[1])
local item = KEYS[2]
local result = 1
if a.event == 'dismiss' then
  if redis.call('EXISTS', item) == 0 then return 0 end
elseif not redis.call('SET', KEYS[1], '1', 'NX', 'EX', a.marker_ttl_s) then
  return 0
end
redis.call('HSET', item, 'kind', a.kind, 'item_id', a.item_id, 'question_id', a.question_id)

if a.event == 'flag' then
  -- counts are the owner's totals: the newest (highest) count wins
  local seen = tonumber(redis.call('HGET', item, 'flag_count') or '0')
  if a.flag_count > seen then
    redis.call('HSET', item, 'flag_count', a.flag_count, 'counts', a.counts, 'first_ms', a.first_ms)
  end
  local last = tonumber(redis.call('HGET', item, 'last_flagged_ms') or '0')
  if a.at_ms > last then redis.call('HSET', item, 'last_flagged_ms', a.at_ms) end
  if type(a.note) == 'string' then
    redis.call('LPUSH', KEYS[5], a.note)
    redis.call('LTRIM', KEYS[5], 0, a.notes_kept - 1)
  end
elseif a.event == 'dismiss' then
  -- only ever forward: a dismissal never brings back flags an earlier one dealt with
  result = tonumber(redis.call('HGET', item, 'flag_count') or '0')
  if result > tonumber(redis.call('HGET', item, 'dismissed_count') or '0') then
    redis.call('HSET', item, 'dismissed_count', result, 'dismissed_ms', a.at_ms,
      'dismissed_by', a.by)
  end
else
  local seen = tonumber(redis.call('HGET', item, 'decision_version') or '0')
  if a.version > seen then
    redis.call('HSET', item, 'decision_version', a.version, 'decision', a.decision,
      'reason', a.reason, 'decided_ms', a.at_ms)
    if a.decision == 'hidden' then
      redis.call('HSET', KEYS[6], a.item_id, a.version)
    else
      redis.call('HDEL', KEYS[6], a.item_id)
    end
    redis.call('INCR', KEYS[7])
    local visibility = redis.call('INCR', KEYS[8])
    redis.call('XADD', KEYS[9], 'MAXLEN', '1', '*', 'version', visibility)
  end
end

-- Where the item belongs now: hidden; open (flagged since the last decision, and past
-- the flags dismissed); or neither.
local f = redis.call('HMGET', item, 'decision', 'decided_ms', 'last_flagged_ms', 'flag_count',
  'first_ms', 'dismissed_count')
local decided_ms = tonumber(f[2] or '0')
if f[1] == 'hidden' then
  redis.call('ZADD', KEYS[4], decided_ms, a.member)
else
  redis.call('ZREM', KEYS[4], a.member)
end
local count = tonumber(f[4] or '0')
local open = f[1] ~= 'hidden' and count > tonumber(f[6] or '0')
  and tonumber(f[3] or '0') > decided_ms
if open then
  local capped = math.min(count, 800)
  local score = capped * 1e13 + (1e13 - tonumber(f[5] or '0'))
  redis.call('ZADD', KEYS[3], string.format('%.0f', score), a.member)
else
  redis.call('ZREM', KEYS[3], a.member)
end
-- In neither list (restored or dismissed, not flagged since), the entry serves no view:
-- it goes after the retention; open or hidden, it stays.
if open or f[1] == 'hidden' then
  redis.call('PERSIST', item)
  redis.call('PERSIST', KEYS[5])
else
  redis.call('EXPIRE', item, a.retention_s)
  redis.call('EXPIRE', KEYS[5], a.retention_s)
end
return result
