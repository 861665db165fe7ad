-- 0003: service entries (probe, probers, tick, ...) are attested from here on (the `attest`
-- stream; docs/adr/0011-service-entries-and-joining.md). Entries a release before this one
-- wrote are replayed by the rules of their time: record the newest id of the log as
-- `legacy_until` in the meta hash. A cluster no earlier release ran on (ARGV[2] = the schema
-- version before this run, below 2) has no such entries, even if producers wrote before the
-- first projector started.
-- KEYS[1] = schema key, KEYS[2] = log, KEYS[3] = meta; ARGV[1] = this migration's number,
-- ARGV[2] = the schema version the cluster had before this run.
if tonumber(ARGV[2]) >= 2 then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info - 1, 2 do
    if info[i] == 'last-generated-id' and info[i + 1] ~= '0-0' then
      redis.call('HSETNX', KEYS[3], 'legacy_until', info[i + 1])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 'OK'
