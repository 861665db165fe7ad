-- 0004: snapshots are written in chunks under a manifest from here on
-- (docs/adr/0017-chunked-snapshots.md): `snapshot_format` 2 in the meta hash. A binary that
-- predates it would take a manifest for a damaged snapshot; it refuses this schema instead
-- ("newer than this binary knows"). Nothing is converted: a snapshot of format 1 (the whole
-- state in one string) still loads, and the next snapshot written replaces it.
-- KEYS[1] = schema key, KEYS[2] = log, KEYS[3] = meta; ARGV[1] = this migration's number.
redis.call('HSET', KEYS[3], 'snapshot_format', '2')
redis.call('SET', KEYS[1], ARGV[1])
return 'OK'
