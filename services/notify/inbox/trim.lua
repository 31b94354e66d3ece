-- Drops expired and surplus notifications from the three indexes of each of several
-- recipients (every key shares the slot); returns, per recipient, the dropped ids so their
-- hashes can go too. One call for many recipients: a recipient with nothing to drop costs
-- two reads here, where a call of its own cost a round trip and a script run.
-- KEYS: inbox, unread, readset of the first recipient, then of the next, and so on.
-- ARGV[1]: JSON {"max_items": n, "floor": id}; ids below the floor have expired.
local args = cjson.decode(ARGV[1])
local replies = {}

local function trim(inbox, unread, readset)
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
end

for i = 1, #KEYS, 3 do
  replies[#replies + 1] = trim(KEYS[i], KEYS[i + 1], KEYS[i + 2])
end
return replies
