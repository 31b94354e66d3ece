-- How many follow a question, and whether the reader does (see store.QuestionStore.follow_info).
-- KEYS[1]: the question (JSON with its asker_id); KEYS[2]: its followers (zset);
-- KEYS[3]: user -> follow version (hash). ARGV[1]: the reader's id, or '' when signed out.
-- A question posted before following existed has no record of its asker, who follows
-- from the start all the same (as notify assumes): an asker with no follow version
-- counts as a follower until their first change records one. Reads only.
-- Returns {follower count, 1 if the reader follows else 0}.

local count = redis.call('ZCARD', KEYS[2])
local reader = ARGV[1]
local following = 0
if reader ~= '' and redis.call('ZSCORE', KEYS[2], reader) then following = 1 end
local raw = redis.call('GET', KEYS[1])
if raw then
  local asker = cjson.decode(raw).asker_id
  if type(asker) == 'string' and redis.call('HEXISTS', KEYS[3], asker) == 0 then
    count = count + 1
    if asker == reader then following = 1 end
  end
end
return {count, following}
