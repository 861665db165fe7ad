-- 0001: the log stream and the projector's consumer group on it.
-- KEYS[1] = schema key, KEYS[2] = log, KEYS[3] = meta; ARGV[1] = this migration's number.
-- Idempotent: an existing group (BUSYGROUP) is left as it is.
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[2], 'projector', '0', 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP') then
  return redis.error_reply(tostring(err))
end
redis.call('SET', KEYS[1], ARGV[1])
return 'OK'
