"""The native TCP listener's accept path: connections the kernel queued while the loop was busy
are taken together, not one per event-loop iteration (uvloop's own pace)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import pytest

from asyncchat import ChatServer

QUEUED = 40


def _loops() -> list[Any]:
    loops: list[Any] = [pytest.param(None, id="asyncio")]
    with contextlib.suppress(ImportError):
        import uvloop

        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return loops


@pytest.mark.parametrize("factory", _loops())
def test_queued_connections_are_taken_together(factory: Callable[[], Any] | None) -> None:
    """Connections that completed in the kernel while the loop did not run are all accepted
    (and counted by admission) within a few loop iterations, fewer than there are
    connections."""

    async def main() -> None:
        async with ChatServer("127.0.0.1", 0) as server:
            socks = []
            try:
                # Blocking connects: the kernel completes them into the listen queue while
                # this loop does not run.
                for _ in range(QUEUED):
                    socks.append(socket.create_connection(server.address))
                admission = server.admission
                for _ in range(QUEUED // 4):
                    if len(admission.connections) == QUEUED:
                        break
                    await asyncio.sleep(0)
                assert len(admission.connections) == QUEUED
            finally:
                for s in socks:
                    s.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
