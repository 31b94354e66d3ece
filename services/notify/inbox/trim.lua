-- Drops expired and surplus notifications from a recipient's three indexes (all keys of
-- one recipient share the slot); returns the dropped ids so their hashes can go too.
-- KEYS: inbox, unread, readset of one recipient.
-- ARGV[1]: JSON {"max_items": n, "floor": id}; ids below the floor have expired.
local inbox, unread, readset = KEYS[1], KEYS[2], KEYS[3]
local args = cjson.decode(ARGV[1])
local dropped = {}

local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', inbox, id)
    redis.call('ZREM', unread, id)
    redis.call('ZREM', readset, id)
    dropped[#dropped + 1] = id
  end
end

drop(redis.call('ZRANGEBYLEX', inbox, '-', '(' .. args.floor))
local over = redis.call('ZCARD', inbox) - args.max_items
if over > 0 then
  -- read items go first, then the oldest unread
  local ids = redis.call('ZRANGE', readset, 0, over - 1)
  drop(ids)
  if #ids < over then drop(redis.call('ZRANGE', unread, 0, over - #ids - 1)) end
end
return dropped
