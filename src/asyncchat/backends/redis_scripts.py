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
    ac:nodes          set of the node ids that joined (a node without a lease is reaped)
    ac:members:<room> hash, member key -> "name\x1fnode": who is in the room, on which node
    ac:mrooms         set of the rooms that have members
"""

from __future__ import annotations

__all__ = ["CLAIM", "EPOCH_KEY", "FEED_KEY", "MEMBER", "PUBLISH", "REAP", "RELEASE", "RENEW"]

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

#: ARGV: epoch, node, feed bound, kind ("j" joined, "l" left, "n" renamed), member key, name,
#: detail (the reason of a leave, the new name of a rename), new key (rename), the room keys
#: joined by "\30", then the room keys. Keeps ``ac:members:<room>`` (key -> "name\31node") and
#: tells every node through the feed. 0 (nothing written) when the epoch is not the node's or
#: its lease is gone.
MEMBER = """
if redis.call('GET', 'ac:epoch') ~= ARGV[1] then return 0 end
if redis.call('EXISTS', 'ac:node:' .. ARGV[2]) == 0 then return 0 end
local kind, key, name, detail, newkey = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
for i = 10, #ARGV do
  local members = 'ac:members:' .. ARGV[i]
  if kind == 'j' then
    redis.call('HSET', members, key, name .. '\\31' .. ARGV[2])
    redis.call('SADD', 'ac:mrooms', ARGV[i])
  elseif kind == 'l' then
    redis.call('HDEL', members, key)
  else
    redis.call('HDEL', members, key)
    redis.call('HSET', members, newkey, detail .. '\\31' .. ARGV[2])
  end
end
redis.call('XADD', 'ac:feed', 'MAXLEN', '~', ARGV[3], '*', 'k', kind, 'ok', key, 'u', name,
  'w', detail, 'nk', newkey, 'node', ARGV[2], 'rooms', ARGV[9])
return 1
"""

#: ARGV: a node without a lease, the feed bound. Its members leave every room (reason
#: ``disconnect``, told through the feed), once: the node that takes it out of ``ac:nodes``
#: does it. Returns how many left.
REAP = """
if redis.call('SREM', 'ac:nodes', ARGV[1]) == 0 then return 0 end
local n = 0
for _, room in ipairs(redis.call('SMEMBERS', 'ac:mrooms')) do
  local members = 'ac:members:' .. room
  local all = redis.call('HGETALL', members)
  for i = 1, #all, 2 do
    local v = all[i + 1]
    local sep = string.find(v, '\\31', 1, true)
    if sep and string.sub(v, sep + 1) == ARGV[1] then
      redis.call('HDEL', members, all[i])
      redis.call('XADD', 'ac:feed', 'MAXLEN', '~', ARGV[2], '*', 'k', 'l', 'ok', all[i],
        'u', string.sub(v, 1, sep - 1), 'w', 'disconnect', 'nk', '', 'node', ARGV[1],
        'rooms', room)
      n = n + 1
    end
  end
  if redis.call('HLEN', members) == 0 then redis.call('SREM', 'ac:mrooms', room) end
end
return n
"""
