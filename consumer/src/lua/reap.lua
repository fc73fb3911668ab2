-- Gives the batches of a dead consumer back to the queue: only if its
-- heartbeat has expired, checked in the same atomic step.
-- KEYS[1]: the queue
-- KEYS[2]: the dead consumer's heartbeat key
-- KEYS[3]: the set of consumer ids
-- KEYS[4..n]: the dead consumer's processing lists
-- ARGV[1]: the dead consumer's id
-- Returns how many records went back, or -1 if the consumer is alive.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
local moved = 0
for i = #KEYS, 4, -1 do
  while redis.call('RPOPLPUSH', KEYS[i], KEYS[1]) do
    moved = moved + 1
  end
end
redis.call('SREM', KEYS[3], ARGV[1])
return moved
