"""An adversarial suite: each attack of issue 14 by one client against a real ``asyncchat serve``
on loopback, and what it cost the server and everyone else.

    python scripts/attack [--quick] [--only NAME[,NAME]] [--json FILE] [--baseline S]

Each attack gets a server of its own (``python -m asyncchat serve --port 0 --no-web``, the
history in a temporary directory, default limits unless the attack says otherwise), set up by
other connections; a probe (six members of room ``probe`` saying a message every 100 ms in
turn, one more timing each arrival, and a newcomer's ``hello`` every 500 ms) runs all along.
Around each attack: the server's RSS (VmRSS before, VmHWM peak after ``clear_refs``, VmRSS
after), its descriptors (/proc/PID/fd, sampled every 50 ms), its CPU time, the probe's latency
(p50/p99/max before and during), members dropped other than the attacker (must be none), the
log lines the attack caused and the traceback lines of the whole log (must be none), and what
the attacker got. Every attack is bounded in count and time and stops by itself; the server is
ended by its pid.

Attacks (``--only``): rooms, history, ids, nick, join, deep, fds, names, after. ``--quick``: smaller
counts, a 1 s baseline and ``--write-timeout 3`` for the readers that never read.
"""
