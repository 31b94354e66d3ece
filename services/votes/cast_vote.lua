-- One voter's vote moves an answer's tally (see store.VoteStore.cast).
-- Mirrors domain.apply_vote; reading the previous vote, moving the counts, bumping the
-- version and the XADD happen in one script, so concurrent votes can neither lose an
-- update nor publish a tally that was never stored.
-- KEYS[4], KEYS[5]: the moderation hashes of the answer and of its question (from
-- moderation-decided); a hidden one takes no vote, checked here so no vote slips in
-- between a check and the write.
-- KEYS[6] (optional): the voter's write-limit counter, with ARGV[4] the limit and ARGV[5]
-- the window in seconds: shared/atomic.lua's 'limit' guard, counted after the hidden
-- check and before anything else, so the limit costs the vote no round trip of its own.
-- Returns {changed (0/1), helpful, unhelpful, previous, version, entry id or ''};
-- {-1} when the answer or its question is hidden; {'limited', seconds left} when the
-- voter is over the limit (nothing written in either case).

local votes_key, tally_key, stream = KEYS[1], KEYS[2], KEYS[3]
local voter, new, event_json = ARGV[1], tonumber(ARGV[2]), ARGV[3]

if redis.call('HGET', KEYS[4], 'hidden') == '1' or redis.call('HGET', KEYS[5], 'hidden') == '1' then
  return {-1}
end

if #KEYS > 5 then
  local n = redis.call('INCR', KEYS[6])
  if n == 1 then redis.call('EXPIRE', KEYS[6], tonumber(ARGV[5])) end
  if n > tonumber(ARGV[4]) then
    return {'limited', tostring(redis.call('TTL', KEYS[6]))}
  end
end

local previous = tonumber(redis.call('HGET', votes_key, voter) or '0')
local helpful = tonumber(redis.call('HGET', tally_key, 'helpful') or '0')
local unhelpful = tonumber(redis.call('HGET', tally_key, 'unhelpful') or '0')
local version = tonumber(redis.call('HGET', tally_key, 'tally_version') or '0')
if previous == new then
  return {0, helpful, unhelpful, previous, version, ''}
end
if previous == 1 then helpful = helpful - 1 elseif previous == -1 then unhelpful = unhelpful - 1 end
if new == 1 then helpful = helpful + 1 elseif new == -1 then unhelpful = unhelpful + 1 end
if helpful < 0 then helpful = 0 end
if unhelpful < 0 then unhelpful = 0 end
version = version + 1
if new == 0 then
  redis.call('HDEL', votes_key, voter)
else
  redis.call('HSET', votes_key, voter, new)
end
redis.call('HSET', tally_key, 'helpful', helpful, 'unhelpful', unhelpful, 'tally_version', version)
-- cjson writes '/' as '\/': still valid JSON, and it reads back the same.
local event = cjson.decode(event_json)
event.helpful = helpful
event.unhelpful = unhelpful
event.previous_value = previous
event.tally_version = version
-- No MAXLEN: the votes service's trimmer never cuts what a group has not read.
local id = redis.call('XADD', stream, '*', '__data__', cjson.encode(event))
return {1, helpful, unhelpful, previous, version, id}
