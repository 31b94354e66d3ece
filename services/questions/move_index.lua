-- Moves up to ARGV[2] entries of one former per-listing index key into the one index
-- (see store.QuestionStore.migrate_indexes), atomically: an entry leaves the former key
-- in the same step it enters the index, so a replica of the former version still adding
-- to the former key meanwhile loses nothing (its entries are moved by a later call).
-- KEYS[1]: the former key (zset); KEYS[2]: the one index (zset, scores 0); KEYS[3]: the
-- marker of a finished move, deleted when an entry moves (a pass running meanwhile that
-- found nothing must not mark the move finished: it may have missed a key).
-- ARGV[1]: the listing's prefix in the index ("kind:slug:"); ARGV[2]: the batch size.
-- Returns how many entries it moved (0 once the former key is gone).

local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
if #members == 0 then return 0 end
local entries = {}
for i = 1, #members do
  entries[#entries + 1] = 0
  entries[#entries + 1] = ARGV[1] .. members[i]
end
redis.call('ZADD', KEYS[2], unpack(entries))
redis.call('ZREM', KEYS[1], unpack(members))
redis.call('DEL', KEYS[3])
return #members
