-- Forward one outbox entry to its event stream, at most once (see shared/relay.py).
-- KEYS[1]: the relayed marker (in the target stream's slot), KEYS[2]: the target stream.
-- ARGV[1]: the marker's time to live in seconds; ARGV[2..]: the entry's fields.
-- Returns the new entry id, or false when this outbox entry was forwarded before.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
end
return false
