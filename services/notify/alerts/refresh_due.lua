-- Points the due index at a doctor's earliest held alert (or drops the doctor), from the
-- held set as it is now, so a hold added concurrently is never forgotten.
-- KEYS: the doctor's held set, the due index. ARGV[1]: JSON {"doctor_id": id}.
local held, due = KEYS[1], KEYS[2]
local args = cjson.decode(ARGV[1])
local first = redis.call('ZRANGE', held, 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', due, args.doctor_id)
else
  redis.call('ZADD', due, first[2], args.doctor_id)
end
return 1
