-- Puts many notifications about the same question (and answer) into their recipients'
-- inboxes in one call, each unless its once-guard exists (InboxStore.add_each_once: a
-- fan-out, such as a new answer's followers). Per notification, exactly what a Txn of
-- InboxStore.add behind an `absent` guard writes: the guard, the item hash, its indexes,
-- the notification-sent event, the outbox entry. What the notifications share is done once
-- per call: whether a moderator hides what they are about (one EXISTS per marker: nothing
-- else runs while a script does, so no decision slips in between), and their entries in
-- the :about: indexes (one ZADD per index, of the ids whose guard let them in).
-- KEYS[1]: the notification-sent stream; KEYS[2]: the outbox stream; then the :about:
-- keys, then the :hidden: markers of the same subjects (as many). Every other key shares
-- their slot and is named from `tag` or given whole (the once-guards).
-- ARGV[1]: JSON {tag, subjects (how many :about: keys), ttl_inbox, ttl_once, wire (the
--   event's field name), trace (the outbox entries' trace fields, a flat list)}
-- ARGV[2 + 6(i-1)] ..: notification i as 6 strings: once-guard key, id, recipient, item
--   JSON, event JSON, external channels (comma-joined, '' for none).
-- Returns per notification its event's entry id, or '' when its guard stopped it.

local stream, outbox = KEYS[1], KEYS[2]
local h = cjson.decode(ARGV[1])
local tag, subjects = h.tag, h.subjects
local ttl_inbox, ttl_once = h.ttl_inbox, h.ttl_once

local hidden = false
for i = 1, subjects do
  if redis.call('EXISTS', KEYS[2 + subjects + i]) == 1 then hidden = true end
end

local added, replies = {}, {}
for i = 2, #ARGV, 6 do
  local once, nid, to, item, event, channels = unpack(ARGV, i, i + 5)
  local entry = ''
  if not redis.call('GET', once) then
    if ttl_once > 0 then
      redis.call('SET', once, nid, 'EX', ttl_once)
    else
      redis.call('SET', once, nid)
    end
    local note = tag .. ':n:' .. nid
    local fields = {'item', item, 'recipient', to, 'read', '0', 'd:inbox', 'delivered'}
    for channel in string.gmatch(channels, '[^,]+') do
      fields[#fields + 1] = 'd:' .. channel
      fields[#fields + 1] = 'pending'
    end
    -- an item about something a moderator hid is kept, out of every index, until a
    -- restore brings it back (inbox/moderate.lua)
    if hidden then
      fields[#fields + 1] = 'hidden'
      fields[#fields + 1] = '1'
    end
    redis.call('HSET', note, unpack(fields))
    redis.call('EXPIRE', note, ttl_inbox)
    for _, index in ipairs({tag .. ':inbox:' .. to, tag .. ':unread:' .. to}) do
      if not hidden then redis.call('ZADD', index, 0, nid) end
      redis.call('EXPIRE', index, ttl_inbox)
    end
    added[#added + 1] = 0
    added[#added + 1] = nid
    entry = redis.call('XADD', stream, '*', h.wire, event)
    if channels ~= '' then
      redis.call('XADD', outbox, '*', 'nid', nid, 'recipient', to, 'channels', channels,
        unpack(h.trace))
    end
  end
  replies[#replies + 1] = entry
end

if #added > 0 then
  for i = 1, subjects do
    redis.call('ZADD', KEYS[2 + i], unpack(added))
    redis.call('EXPIRE', KEYS[2 + i], ttl_inbox)
  end
end
return replies
