-- Takes, renews or gives back live-stream slots, several in one call (every key shares
-- the runtime's hash tag, so a batch stays in one Cluster slot). A user's slots are a
-- sorted set of connection ids scored by the end of their lease (ms), so the slots of a
-- replica that died lapse by themselves. Returns, per operation, 1, or 0 when a take
-- finds every slot held.
-- KEYS[i]: the slots of the user of operation i.
-- ARGV[1]: JSON [{"op": "take"|"renew"|"give", "id": s, "lease_ms": n, "cap": n}, ...]
-- ARGV[2]: now (ms).
local ops = cjson.decode(ARGV[1])
local now_ms = tonumber(ARGV[2])
local out = {}
for i, args in ipairs(ops) do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  if args.op == 'give' then
    redis.call('ZREM', key, args.id)
    out[i] = 1
  elseif args.op == 'take' and redis.call('ZCARD', key) >= args.cap then
    out[i] = 0
  else
    redis.call('ZADD', key, now_ms + args.lease_ms, args.id)
    redis.call('PEXPIRE', key, args.lease_ms)
    out[i] = 1
  end
end
return out
