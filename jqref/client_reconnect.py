"""A Client of a detached cluster keeps its futures over a dropped connection.

distributed's Client cancels every pending future as soon as its connection
to the scheduler drops, before it tries to reconnect: with a scheduler that
went away they could never complete. A detached scheduler on the login node
stays, and holds what a dropped client wanted until that client is back
(`login_scheduler_main.Session`). So for the clients of a detached cluster
the cancel is skipped, and they keep trying for as long as the scheduler
waits for them (its idle timeout): the futures complete once the client has
reconnected, which it does to the same forwarded local port.
"""

from __future__ import annotations

import asyncio

from distributed import Client

_MARK = "_jqref_keeps_futures"


def _detached_cluster(client: Client):
    cluster = getattr(client, "cluster", None)
    return cluster if getattr(cluster, "detach", False) else None


def _keeping_futures(reconnect):
    async def _reconnect(self: Client):
        cluster = _detached_cluster(self)
        if cluster is None:
            return await reconnect(self)
        futures, self.futures = self.futures, {}
        timeout, self._timeout = self._timeout, max(self._timeout, cluster.idle_timeout)
        try:
            reconnecting = asyncio.ensure_future(reconnect(self))
            # It cancels and clears `self.futures` before its first wait: the empty stand-in.
            await asyncio.sleep(0)
            self.futures = futures
            await reconnecting
        finally:
            self.futures = futures
            self._timeout = timeout

    setattr(_reconnect, _MARK, True)
    return _reconnect


def apply() -> None:
    """Make clients of detached clusters keep their futures; applying again changes nothing."""
    if not getattr(Client._reconnect, _MARK, False):
        Client._reconnect = _keeping_futures(Client._reconnect)
