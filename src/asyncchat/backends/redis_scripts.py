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
    ac:users          hash, member key -> "name\x1fnode\x1faway": every connected user, on
                      which node, and its away message ("" when not away)
    ac:inbox:<node>   stream of the direct messages to a node's members (trimmed to about
                      INBOX_MAX entries; deleted when the node goes)
    ac:bans           hash, ban id -> the ban as JSON; ac:banid its counter

The feed carries, beside the messages (entries with ``r`` and ``s``), the cluster's events
(entries with ``k``, written by :data:`EVENT` and :data:`REAP`): ``j`` joined, ``l`` left,
``n`` renamed, ``u`` a user connected, ``q`` a user went, ``a`` away, ``t`` a topic, ``b`` a
ban, ``B`` a ban lifted; their fields are ``ok`` (member or room key), ``u`` (name), ``w``
(detail), ``nk`` (new key of a rename; the id of a ban), ``node`` and ``rooms``.
"""

from __future__ import annotations

__all__ = [
    "CLAIM",
    "EPOCH_KEY",
    "EVENT",
    "FEED_KEY",
    "PUBLISH",
    "REAP",
    "RELEASE",
    "RENEW",
    "inbox_key",
    "ms",
]

EPOCH_KEY = "ac:epoch"
FEED_KEY = "ac:feed"


def inbox_key(node: str) -> str:
    """The stream of the direct messages to node ``node``'s members."""
    return f"ac:inbox:{node}"


def ms(seconds: float) -> int:
    """``seconds`` as the whole milliseconds Redis takes (at least 1)."""
    return max(1, round(seconds * 1000))


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

#: ARGV: epoch, node, feed bound, kind, key, name, detail, new key, the room keys joined by
#: "\30", then the room keys. Kinds: "j" joined (detail: the room's display name), "l" left
#: (detail: the reason), "n" renamed (detail: the new name, new key its key), "u" a user
#: connected, "q" a user went, "a" away (detail: the message, "" back), "t" a topic (key: the
#: room's, name: its display name, detail: the topic as JSON, "" none), "b" a ban (detail: the
#: ban as JSON; its id is made here and returned), "B" a ban lifted (key: its id; 0 when there
#: was none). Keeps ``ac:members:<room>``, ``ac:users``, ``ac:topic`` and ``ac:bans``, and
#: tells every node through the feed. 0 (nothing written) when the epoch is not the node's or
#: its lease is gone; else 1 (a ban: its id).
EVENT = """
if redis.call('GET', 'ac:epoch') ~= ARGV[1] then return 0 end
local node = ARGV[2]
if redis.call('EXISTS', 'ac:node:' .. node) == 0 then return 0 end
local kind, key, name, detail, newkey = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local out = 1
-- a user's "name\\31node\\31away": its node and its away message
local function parse(v)
  local a = string.find(v, '\\31', 1, true)
  local b = a and string.find(v, '\\31', a + 1, true)
  if not b then return '', '' end
  return string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
end
if kind == 'j' or kind == 'l' or kind == 'n' then
  for i = 10, #ARGV do
    local members = 'ac:members:' .. ARGV[i]
    if kind == 'j' then
      redis.call('HSET', members, key, name .. '\\31' .. node)
      redis.call('SADD', 'ac:mrooms', ARGV[i])
      redis.call('HSET', 'ac:room', ARGV[i], detail)
    elseif kind == 'l' then
      redis.call('HDEL', members, key)
      if redis.call('HLEN', members) == 0 then redis.call('SREM', 'ac:mrooms', ARGV[i]) end
    else
      redis.call('HDEL', members, key)
      redis.call('HSET', members, newkey, detail .. '\\31' .. node)
    end
  end
  if kind == 'n' then
    local v = redis.call('HGET', 'ac:users', key)
    local away = ''
    if v then
      local _, a = parse(v)
      away = a
    end
    redis.call('HDEL', 'ac:users', key)
    redis.call('HSET', 'ac:users', newkey, detail .. '\\31' .. node .. '\\31' .. away)
  end
elseif kind == 'u' or kind == 'a' then
  redis.call('HSET', 'ac:users', key, name .. '\\31' .. node .. '\\31' .. detail)
elseif kind == 'q' then
  local v = redis.call('HGET', 'ac:users', key)
  if v and parse(v) == node then
    redis.call('HDEL', 'ac:users', key)
  end
elseif kind == 't' then
  if detail == '' then
    redis.call('HDEL', 'ac:topic', key)
  else
    redis.call('HSET', 'ac:topic', key, detail)
  end
elseif kind == 'b' then
  out = redis.call('INCR', 'ac:banid')
  newkey = tostring(out)
  redis.call('HSET', 'ac:bans', newkey, detail)
elseif kind == 'B' then
  if redis.call('HDEL', 'ac:bans', key) == 0 then return 0 end
end
redis.call('XADD', 'ac:feed', 'MAXLEN', '~', ARGV[3], '*', 'k', kind, 'ok', key, 'u', name,
  'w', detail, 'nk', newkey, 'node', node, 'rooms', ARGV[9])
return out
"""

#: ARGV: a node without a lease, the feed bound. Its members leave every room (reason
#: ``disconnect``) and its users go (``q``), told through the feed, and its inbox is dropped,
#: once: the node that takes it out of ``ac:nodes`` does it. Returns how many left a room.
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
local users = redis.call('HGETALL', 'ac:users')
for i = 1, #users, 2 do
  local v = users[i + 1]
  local a = string.find(v, '\\31', 1, true)
  local b = a and string.find(v, '\\31', a + 1, true)
  if b and string.sub(v, a + 1, b - 1) == ARGV[1] then
    redis.call('HDEL', 'ac:users', users[i])
    redis.call('XADD', 'ac:feed', 'MAXLEN', '~', ARGV[2], '*', 'k', 'q', 'ok', users[i],
      'u', string.sub(v, 1, a - 1), 'w', '', 'nk', '', 'node', ARGV[1], 'rooms', '')
  end
end
redis.call('DEL', 'ac:inbox:' .. ARGV[1])
return n
"""
