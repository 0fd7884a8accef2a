"""The Lua scripts of the Redis broker, and the key names they share (docs/cluster.md).

Every key starts with ``ac:``. The scripts name keys they build from their arguments, so they
run on one Redis server (or a primary with replicas), not on a Redis Cluster.

::

    ac:epoch          the cluster's generation: a random string set once; gone after a Redis
                      that lost its data (then every node resets: docs/cluster.md)
    ac:seq            hash, room key -> the room's last seq
    ac:room           hash, room key -> the room's display name
    ac:log:<room>     stream, one entry per message, id "<seq>-1", trimmed to history_max
    ac:feed           stream every node reads: one entry per message, all rooms, in the order
                      the scripts ran; trimmed to about FEED_MAX entries
    ac:id:<ckey>      "seq ts" of a message posted with a client id, for idempotency_window
    ac:node:<id>      a node's lease (expires unless renewed): its names and its publishes
                      count only while it exists
    ac:name:<key>     the node id holding a user name, expiring with the node's lease
    ac:topic          hash, room key -> the topic as JSON
"""

from __future__ import annotations

__all__ = ["CLAIM", "EPOCH_KEY", "FEED_KEY", "PUBLISH", "RELEASE", "RENEW"]

EPOCH_KEY = "ac:epoch"
FEED_KEY = "ac:feed"

#: ARGV: epoch, node, idempotency window (ms), room history bound, feed bound, then 8 values
#: per message: room, name, sender, text, ts, action ("1"/""), client key ("" none), origin.
#: Returns 3 strings per message: "0" new / "1" already posted, its seq, its ts. Refuses the
#: whole batch, before writing, with an ``EPOCH <current>`` error when the epoch is not the
#: node's (Redis lost its data) and ``FENCED`` when the node's lease is gone.
PUBLISH = """
local epoch = redis.call('GET', 'ac:epoch')
if epoch ~= ARGV[1] then
  return redis.error_reply('EPOCH ' .. tostring(epoch))
end
if redis.call('EXISTS', 'ac:node:' .. ARGV[2]) == 0 then
  return redis.error_reply('FENCED')
end
local window, maxlen, feedmax = ARGV[3], ARGV[4], ARGV[5]
local out = {}
for i = 6, #ARGV, 8 do
  local room, name, sender, text = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ts, action, ckey, origin = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local seen = false
  if ckey ~= '' then
    seen = redis.call('GET', 'ac:id:' .. ckey)
  end
  if seen then
    local sp = string.find(seen, ' ', 1, true)
    out[#out + 1] = '1'
    out[#out + 1] = string.sub(seen, 1, sp - 1)
    out[#out + 1] = string.sub(seen, sp + 1)
  else
    local seq = tostring(redis.call('HINCRBY', 'ac:seq', room, 1))
    redis.call('HSET', 'ac:room', room, name)
    redis.call('XADD', 'ac:log:' .. room, 'MAXLEN', maxlen, seq .. '-1',
      'n', name, 'f', sender, 't', text, 'ts', ts, 'a', action, 'o', origin)
    redis.call('XADD', 'ac:feed', 'MAXLEN', '~', feedmax, '*',
      'r', room, 's', seq, 'n', name, 'f', sender, 't', text, 'ts', ts, 'a', action, 'o', origin)
    if ckey ~= '' then
      redis.call('SET', 'ac:id:' .. ckey, seq .. ' ' .. ts, 'PX', window)
    end
    out[#out + 1] = '0'
    out[#out + 1] = seq
    out[#out + 1] = ts
  end
end
return out
"""

#: KEYS: the node's lease. ARGV: node, lease (ms), then the names (keys) the node holds, whose
#: keys live as long as the lease. 1 if renewed, 0 if the lease had expired (fenced).
RENEW = """
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 0 then return 0 end
for i = 3, #ARGV do
  local key = 'ac:name:' .. ARGV[i]
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]) end
end
return 1
"""

#: KEYS: the name key. ARGV: node, epoch, lease (ms). 1 if the name is now the node's; 0 if
#: another live node holds it; -1 if this node is fenced or the epoch is not its own.
CLAIM = """
if redis.call('GET', 'ac:epoch') ~= ARGV[2] then return -1 end
if redis.call('EXISTS', 'ac:node:' .. ARGV[1]) == 0 then return -1 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and redis.call('EXISTS', 'ac:node:' .. holder) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

#: KEYS: the name key. ARGV: node. Frees the name if this node holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
