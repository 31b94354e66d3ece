-- Takes, renews or gives back one live-stream slot of a user. The slots are a sorted set
-- of connection ids scored by the end of their lease (ms), so the slots of a replica that
-- died lapse by themselves. Returns 1, or 0 when a take finds every slot held.
-- KEYS[1]: the user's slots.
-- ARGV[1]: JSON {"op": "take"|"renew"|"give", "id": s, "now_ms": n, "lease_ms": n, "cap": n}
local key = KEYS[1]
local args = cjson.decode(ARGV[1])
redis.call('ZREMRANGEBYSCORE', key, '-inf', args.now_ms)
if args.op == 'give' then
  redis.call('ZREM', key, args.id)
  return 1
end
if args.op == 'take' and redis.call('ZCARD', key) >= args.cap then
  return 0
end
redis.call('ZADD', key, args.now_ms + args.lease_ms, args.id)
redis.call('PEXPIRE', key, args.lease_ms)
return 1
