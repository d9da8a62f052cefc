"""Count the requests a Redis client writes to the network, to assert on round trips."""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import Connection


def counting_connection_class() -> type[Connection]:
    """A redis-py connection class whose ``writes`` counts network writes (one per round trip).

    A pipeline sends all its commands in one write, so ``writes`` counts round trips, not
    commands.
    """

    class CountingConnection(Connection):
        writes = 0

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            type(self).writes += 1
            await super().send_packed_command(command, check_health)

    return CountingConnection
