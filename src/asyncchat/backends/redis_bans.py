"""Bans kept in Redis for a cluster (docs/cluster.md): the :class:`~asyncchat.interfaces.BanStore`
of a node, so that a ban made on any node is stored once (``ac:bans``) and told to every node
through the feed, which enforces it at once (``ClusterEvents.on_ban``)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from ..interfaces import Ban
from .redis import RedisBroker, RedisDown
from .redis_events import ban_from_json, ban_json

__all__ = ["RedisBans"]


class RedisBans:
    """The bans of the cluster that ``broker`` is a node of. Methods raise ``StoreError``
    (``RedisDown``) when Redis cannot answer."""

    def __init__(self, broker: RedisBroker[Any]) -> None:
        self.broker = broker

    async def add_ban(self, ban: Ban) -> int:
        return await self.broker.call_event("b", "", ban.value, ban_json(ban))

    async def remove_ban(self, ban_id: int) -> bool:
        return await self.broker.call_event("B", str(ban_id)) == 1

    async def bans(self) -> list[Ban]:
        try:
            kept = await self.broker.redis.hgetall("ac:bans")
        except (RedisError, OSError) as exc:
            raise RedisDown(f"cannot read the bans: {exc}") from exc
        found = []
        for ban_id, text in kept.items():
            try:
                found.append(ban_from_json(ban_id, text))
            except ValueError:
                continue  # not ours: ignored, as an unknown key would be
        return found
