-- The question page as last built, if still current, in one round trip
-- (see store.QuestionStore.cached_page).
-- KEYS[1]: the page cache, a hash {version, etag, body}; KEYS[2]: the page's version,
-- bumped by every write that changes the page, in that write's own transaction;
-- KEYS[3] (optional): an anonymous reader's counter, with ARGV[1] the limit and ARGV[2]
-- the window in seconds: the fixed window of shared/atomic.lua's 'limit' guard.
-- Returns {'limited', seconds left} | {'stale', version} | {'page', etag, body}.

if #KEYS > 2 then
  local n = redis.call('INCR', KEYS[3])
  if n == 1 then redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2])) end
  if n > tonumber(ARGV[1]) then
    return {'limited', tostring(redis.call('TTL', KEYS[3]))}
  end
end
local version = redis.call('GET', KEYS[2]) or '0'
local cached = redis.call('HMGET', KEYS[1], 'version', 'etag', 'body')
if cached[1] ~= version then return {'stale', version} end
return {'page', cached[2], cached[3]}
