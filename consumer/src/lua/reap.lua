-- Gives the batches of a dead consumer back to its shard of the queue:
-- only if its heartbeat in that shard has expired, checked in the same
-- atomic step.
-- KEYS[1]: the shard of the queue
-- KEYS[2]: the dead consumer's heartbeat key in that shard
-- KEYS[3..n]: the dead consumer's processing lists in that shard
-- Returns how many records went back, or -1 if the consumer is alive.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local moved = 0
for i = #KEYS, 3, -1 do
  while redis.call('RPOPLPUSH', KEYS[i], KEYS[1]) do
    moved = moved + 1
  end
end
return moved
