-- Marks the move into the one index finished (see store.QuestionStore.migrate_indexes),
-- unless something changed since the pass began: its token is still the marker's value
-- only if no other pass began since and no entry moved (move_index.lua deletes it).
-- KEYS[1]: the marker; ARGV[1]: the pass's token; ARGV[2]: the value meaning finished.
-- Returns 1 when marked, 0 when not.

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
