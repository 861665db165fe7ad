-- 0005: node loads leave the node records for their own hash, `node_loads` (node -> load in
-- thousandths; docs/adr/0018-load-aware-placement.md): a `loads` entry naming hundreds of
-- nodes then writes one short field each instead of each whole record. Records written before
-- carry `"load":N` as their last field (serde writes it last, and only when set): it moves.
-- Idempotent: a record without it is left alone, and a load already in `node_loads` (written
-- since) is kept.
-- KEYS[1] = schema key, KEYS[4] = node records, KEYS[5] = node_loads; ARGV[1] = this
-- migration's number.
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[4], cursor, 'COUNT', 1000)
  cursor = page[1]
  local fields = page[2]
  for i = 1, #fields, 2 do
    local record = fields[i + 1]
    local load = string.match(record, ',"load":(%d+)')
    if load then
      redis.call('HSETNX', KEYS[5], fields[i], load)
      redis.call('HSET', KEYS[4], fields[i], (string.gsub(record, ',"load":%d+', '', 1)))
    end
  end
until cursor == '0'
redis.call('SET', KEYS[1], ARGV[1])
return 'OK'
