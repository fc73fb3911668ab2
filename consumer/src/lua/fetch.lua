-- Moves up to ARGV[1] records from the head of the queue to the tail of a
-- consumer's processing list, atomically: a record is always in exactly one
-- of the two lists.
-- KEYS[1]: the queue
-- KEYS[2]: the processing list (one in-flight slot of one consumer)
-- ARGV[1]: the most records to move
-- Returns the whole processing list afterwards, oldest first: the batch is
-- always exactly what the list holds, including anything left in it before.
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  -- unpack() is bounded by Lua's stack: push in chunks.
  for i = 1, #items, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
  end
end
return redis.call('LRANGE', KEYS[2], 0, -1)
