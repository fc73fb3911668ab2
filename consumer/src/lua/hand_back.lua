-- Puts processing lists back at the head of the queue, in their order, and
-- deletes them: for a consumer that stops before it could store a batch.
-- KEYS[1]: the queue
-- KEYS[2..n]: processing lists
-- Returns how many records went back.
local moved = 0
for i = #KEYS, 2, -1 do
  while redis.call('RPOPLPUSH', KEYS[i], KEYS[1]) do
    moved = moved + 1
  end
end
return moved
