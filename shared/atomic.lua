-- Guarded, all-or-nothing writes (see shared/atomic.py).
-- ARGV[1]: a JSON list of specs, each applied on its own:
--   {base, guards = [{kind, key, value?, ttl_s?, limit?, window_s?}],
--    writes = [{command, key, args, when?, unless?}]}
-- `key` fields (and the entries of `when` and `unless`) index KEYS, offset by the spec's
-- `base`. A spec checks every guard before it writes anything, so a refused spec changes
-- nothing (bar a limit count). A write with `when` runs only if one of those keys exists,
-- one with `unless` only if none does; a skipped XADD replies '' in its place.
-- Returns one reply per spec: {'ok', xadd ids...} or {refusal, guard index, found}.

local function check(guard, key, index)
  if guard.kind == 'limit' then
    -- a fixed-window counter: counts every attempt, refuses past the limit
    local n = redis.call('INCR', key)
    if n == 1 then redis.call('EXPIRE', key, guard.window_s) end
    if n > guard.limit then
      return {'limited', tostring(index), tostring(redis.call('TTL', key))}
    end
  elseif guard.kind == 'absent' then
    local found = redis.call('GET', key)
    if found then return {'exists', tostring(index), found} end
  elseif redis.call('EXISTS', key) == 0 then
    return {'missing', tostring(index), ''}
  end
  return nil
end

local function write(command, key, args)
  if command == 'HSET_IF_NEWER' then
    -- newest wins: args are version field, version, then field/value pairs
    local current = tonumber(redis.call('HGET', key, args[1]) or '-1')
    if tonumber(args[2]) > current then redis.call('HSET', key, unpack(args)) end
    return nil
  end
  return redis.call(command, key, unpack(args))
end

local function any_exists(spec, indexes)
  local keys = {}
  for i, index in ipairs(indexes) do keys[i] = KEYS[spec.base + index] end
  return redis.call('EXISTS', unpack(keys)) > 0
end

local function wanted(spec, w)
  if w.when and not any_exists(spec, w.when) then return false end
  if w.unless and any_exists(spec, w.unless) then return false end
  return true
end

local function apply(spec)
  for index, guard in ipairs(spec.guards) do
    local refusal = check(guard, KEYS[spec.base + guard.key], index)
    if refusal then return refusal end
  end
  for _, guard in ipairs(spec.guards) do
    if guard.kind == 'absent' then
      local key = KEYS[spec.base + guard.key]
      if guard.ttl_s > 0 then
        redis.call('SET', key, guard.value, 'EX', guard.ttl_s)
      else
        redis.call('SET', key, guard.value)
      end
    end
  end
  local reply = {'ok'}
  for _, w in ipairs(spec.writes) do
    local result = ''
    if wanted(spec, w) then result = write(w.command, KEYS[spec.base + w.key], w.args) end
    if w.command == 'XADD' then reply[#reply + 1] = result end
  end
  return reply
end

local replies = {}
for _, spec in ipairs(cjson.decode(ARGV[1])) do replies[#replies + 1] = apply(spec) end
return replies
