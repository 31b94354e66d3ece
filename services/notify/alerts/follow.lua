-- Apply a follow change to notify's projection of a question's followers, newest wins.
-- KEYS[1]: user -> follow version hash; KEYS[2]: the followers (score 0, ordered by id).
-- ARGV[1]: JSON {user, version, following, ttl_s}. Returns 1 if applied, 0 if stale.
local a = cjson.decode(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], a.user) or '0')
if a.version <= current then return 0 end
redis.call('HSET', KEYS[1], a.user, a.version)
if a.following then
  redis.call('ZADD', KEYS[2], 0, a.user)
else
  redis.call('ZREM', KEYS[2], a.user)
end
redis.call('EXPIRE', KEYS[1], a.ttl_s)
redis.call('EXPIRE', KEYS[2], a.ttl_s)
return 1
