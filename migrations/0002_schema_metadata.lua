-- 0002: a metadata hash describing the formats stored in this cluster's keys, so a later
-- binary can tell what it is reading: node records (JSON, format 1), snapshots (format 1),
-- log and events wire format (v 1).
-- KEYS[1] = schema key, KEYS[2] = log, KEYS[3] = meta; ARGV[1] = this migration's number.
redis.call('HSETNX', KEYS[3], 'node_record_format', '1')
redis.call('HSETNX', KEYS[3], 'snapshot_format', '1')
redis.call('HSETNX', KEYS[3], 'wire_version', '1')
local t = redis.call('TIME')
redis.call('HSETNX', KEYS[3], 'created_ms', tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
redis.call('SET', KEYS[1], ARGV[1])
return 'OK'
