"""Benchmark asyncchat against Redis pub/sub, NATS and two textbook chat servers, in one run.

Every system is started by this script on a free loopback port (never the machine's own Redis or
NATS), measured with the same load generator, and stopped by pid when its point is done.

Workloads
  fanout   N members in one room and S senders posting ~100-byte texts as fast as the server takes
           them (pipelined, at most --window unanswered per sender, and never more than --max-lag
           messages ahead of the slowest member process). Reports deliveries per second, the
           server's CPU time per delivery (utime+stime from /proc/PID/stat, all threads), the
           server's and the load generator's CPU use, and what limited the run.
  latency  --latency-members members and S senders posting at a fixed total rate; each text
           carries its send time (CLOCK_MONOTONIC, shared by all processes); p50/p90/p99/p99.9 of
           the end-to-end latency measured at the members.
  idle     M connected, handshaken, idle clients; the server's RSS per connection
           ((VmRSS after - VmRSS before) / M), its peak RSS and its CPU time per connection set-up.

Delivery: one message received by one connection other than its sender. In asyncchat and the
textbook servers the senders are room members too, so they also receive the other senders'
messages, and those count; Redis and NATS publishers do not subscribe. Deliveries are counted
without decoding anything: asyncchat frames by their 4-byte length prefix (one byte of the
payload tells a message from an ack), the textbook servers' frames by their 10-byte ASCII header
(two frames per delivery), Redis by the fixed RESP prefix of a pub/sub message and NATS by its
"MSG <subject> " line, both with bytes.count (C speed) across read boundaries.

Systems
  asyncchat  sys.executable -m asyncchat serve (this venv), with the flood limits lifted:
             --rate 1e6 --burst 1e6 --max-outbox 64 MiB, --max-connections above M, (fanout,
             latency) keepalive pings pushed out of the way, and its history (see --history) in a
             temporary directory: the user's own history file is never touched.
  redis      redis-server --save "" --appendonly no: members SUBSCRIBE, senders PUBLISH.
  nats       nats-server -a 127.0.0.1: members SUB, senders PUB (plain text protocol).
  redis-streams, jetstream
             the durable peers (fanout with the C generator only; not run unless named):
             redis-server --appendonly yes --appendfsync everysec in a temporary directory,
             senders XADD to one stream (the reply is the window), members XREAD BLOCK 0 from
             the last id they read; nats-server -js with file storage in a temporary
             directory, one stream on the subject, senders PUB with a reply inbox and wait for
             the PubAcks (the window), each member its own ephemeral push consumer (deliver
             all, ack none).
  select     scripts/baselines/select_server.py (textbook select() loop).
  thread     scripts/baselines/thread_server.py (textbook thread per client).
  asyncchat-ws, asyncchat-mixed
             asyncchat with its members on the web listener's WebSocket (/ws; every member, or
             every second one), the senders on the native protocol: the fan-out to WebSocket
             members beside the native path. Not run unless named in --systems.
  asyncchat-base, asyncchat-nohist-base
             with --baseline PATH (an older checkout, e.g. a git worktree): asyncchat and
             asyncchat-nohist with the server run from PATH/src (PYTHONPATH), so that one run
             measures before and after side by side ("after / before" table under fanout).

Load generator. fanout uses, by default (--gen c), scripts/bench/cgen/gen.c: one process, one
thread, epoll, non-blocking sockets, pinned off --server-cpu; the bench builds it with cc -O2
into ~/.cache/asyncchat-bench on first use (again when the source changes) and drives it over
its stdin/stdout. Its asyncchat senders put a unique id in each say (--say-id off: none). The
WebSocket systems, and latency and idle, use the Python generator: worker processes on uvloop
(--procs member processes plus one sender process); --gen python uses it for fanout too. Both
report their own CPU use. A point where the generator, and not the server, was the limit is
flagged in the table ("limit" column) and in a note under it; such a figure is a lower bound for
the server, and its CPU per delivery is the comparable figure. The machine's other CPU load
during the window is reported too ("other").
"""

from __future__ import annotations

# The package: loadgen (the load-generator processes and their handle in the parent), clients
# (one connection: counting, windows, pacing) and protocols (each system's wire protocol),
# systems (starting and stopping each server, availability, versions), workloads (fanout,
# latency, idle), report (tables, ratios, plot), cli (options and the run). The docstring above
# is the --help text.
