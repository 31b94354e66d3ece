-- Indexes a digest made before digests were listed under each question's :about: index
-- (see InboxStore.index_old_digests): it is put there, and, when every question it lists is
-- hidden now, it leaves its recipient's indexes as moderate.lua takes it out. Idempotent;
-- atomic against moderate.lua, so a restore after this call brings it back.
-- KEYS[1]: the notification's hash. Every other key shares its slot and is named from `tag`.
-- ARGV[1]: JSON {tag, nid, ttl_s (of an :about: index)}
-- Returns 0 (not a digest, or gone), 1 (indexed), 2 (indexed and hidden).
local a = cjson.decode(ARGV[1])
local tag, nid = a.tag, a.nid
local f = redis.call('HMGET', KEYS[1], 'item', 'recipient', 'hidden')
local raw, recipient = f[1], f[2]
if not raw or not recipient then return 0 end
local ok, item = pcall(cjson.decode, raw)
if not ok or type(item) ~= 'table' or item.kind ~= 'digest' then return 0 end

local lines, all_hidden = 0, true
for _, line in ipairs(item.items or {}) do
  local qid = line.question_id
  if type(qid) == 'string' then
    lines = lines + 1
    local about = tag .. ':about:q:' .. qid
    redis.call('ZADD', about, 0, nid)
    redis.call('EXPIRE', about, a.ttl_s)
    if redis.call('EXISTS', tag .. ':hidden:q:' .. qid) == 0 then all_hidden = false end
  else
    all_hidden = false
  end
end
if lines == 0 or not all_hidden or f[3] == '1' then return 1 end
redis.call('HSET', KEYS[1], 'hidden', 1)
redis.call('ZREM', tag .. ':inbox:' .. recipient, nid)
redis.call('ZREM', tag .. ':unread:' .. recipient, nid)
redis.call('ZREM', tag .. ':readset:' .. recipient, nid)
return 2
