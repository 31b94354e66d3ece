-- Applies a moderator's decision on a question or an answer to the inboxes: the items about
-- it leave their recipients' indexes (hidden) or come back (restored), a slice at a time.
-- The newest decision wins: an older version changes nothing and stops the caller; the same
-- version again (a redelivery, or the next slice) applies the same decision again, which
-- changes nothing that was done. Nothing is counted here: the indexes are the truth, so a
-- hidden item is neither listed nor unread, and a restored one is read or unread as before.
-- KEYS[1]: the item's newest decision version; KEYS[2]: its hidden marker (exists while
-- hidden); KEYS[3]: the ids of the notifications about it (ZSET, score 0, by id). Every
-- other key shares their slot and is named from `tag`.
-- ARGV[1]: JSON {tag, version, hidden (bool), after (id or ''), count, ttl_s (of the
-- version and the marker), inbox_ttl_s}
-- Returns {'stale'} or {'ok', the id the next slice starts after ('' when this was the
-- last), recipients whose items came back...}.
local ver_key, hidden_key, about_key = KEYS[1], KEYS[2], KEYS[3]
local a = cjson.decode(ARGV[1])
local tag = a.tag

local current = tonumber(redis.call('GET', ver_key) or '0')
if a.version < current then return {'stale'} end
if a.version > current then
  redis.call('SET', ver_key, a.version, 'EX', a.ttl_s)
  if a.hidden then
    redis.call('SET', hidden_key, a.version, 'EX', a.ttl_s)
  else
    redis.call('DEL', hidden_key)
  end
end

local start = '-'
if a.after ~= '' then start = '(' .. a.after end
local ids = redis.call('ZRANGE', about_key, start, '+', 'BYLEX', 'LIMIT', 0, a.count)
local touched, seen = {}, {}

local function digest_hidden(item)
  -- a digest (about each question it lists) is hidden while every one of them is hidden;
  -- while some are, the inbox leaves their lines out when it is read
  for _, line in ipairs(item.items or {}) do
    if type(line.question_id) ~= 'string'
        or redis.call('EXISTS', tag .. ':hidden:q:' .. line.question_id) == 0 then
      return false
    end
  end
  return true
end

local function still_hidden(item)
  -- restored, an item stays hidden while the other thing it is about is hidden
  -- (an answer's notification on a hidden question, or the hidden answer on a restored one)
  if item.kind == 'digest' then return digest_hidden(item) end
  local q, ans = item.question_id, item.answer_id
  if type(q) == 'string' and redis.call('EXISTS', tag .. ':hidden:q:' .. q) == 1 then
    return true
  end
  return type(ans) == 'string' and redis.call('EXISTS', tag .. ':hidden:a:' .. ans) == 1
end

for _, nid in ipairs(ids) do
  local note = tag .. ':n:' .. nid
  local fields = redis.call('HMGET', note, 'recipient', 'read', 'item')
  local recipient, read, item = fields[1], fields[2], fields[3]
  if not recipient or not item then
    redis.call('ZREM', about_key, nid) -- expired or trimmed: nothing to show or hide
  else
    local inbox = tag .. ':inbox:' .. recipient
    local unread = tag .. ':unread:' .. recipient
    local readset = tag .. ':readset:' .. recipient
    local decoded = cjson.decode(item)
    if a.hidden then
      -- a digest with some of its questions still shown stays, less the hidden lines
      if decoded.kind ~= 'digest' or digest_hidden(decoded) then
        redis.call('HSET', note, 'hidden', 1)
        redis.call('ZREM', inbox, nid)
        redis.call('ZREM', unread, nid)
        redis.call('ZREM', readset, nid)
      end
    elseif not still_hidden(decoded) then
      redis.call('HDEL', note, 'hidden')
      redis.call('ZADD', inbox, 0, nid)
      local index = unread
      if read == '1' then index = readset end
      redis.call('ZADD', index, 0, nid)
      redis.call('EXPIRE', inbox, a.inbox_ttl_s)
      redis.call('EXPIRE', index, a.inbox_ttl_s)
      if not seen[recipient] then
        seen[recipient] = true
        touched[#touched + 1] = recipient
      end
    end
  end
end

-- where the next slice starts ('' when this one was the last)
local reply = {'ok', ''}
if #ids >= a.count then reply[2] = ids[#ids] end
for _, recipient in ipairs(touched) do reply[#reply + 1] = recipient end
return reply
