"""A Client of a detached cluster keeps its futures over a dropped connection.

distributed's Client cancels every pending future as soon as its connection
to the scheduler drops, before it tries to reconnect: with a scheduler that
went away they could never complete. A detached scheduler on the login node
stays, and holds what a dropped client wanted until that client is back
(`login_main.Session`). So for the clients of a detached cluster
the cancel is skipped, and they keep trying for as long as the scheduler
waits for them (its idle timeout): the futures complete once the client has
reconnected, which it does to the same forwarded local port.
"""

from __future__ import annotations

from collections import UserDict

from distributed import Client

from ..compat_versions import warn_if_untested_distributed

_MARK = "_jqref_keeps_futures"


class _KeptFutures(UserDict):
    """`Client.futures` while distributed's reconnect starts: the same
    futures, for everything that reads or adds them meanwhile, except that
    there are none to cancel; clearing them puts the client's own dict back."""

    def __init__(self, client: Client):
        super().__init__()
        self.client = client
        self.data = client.futures

    def values(self):
        return ()

    def clear(self):
        self.client.futures = self.data


def _detached_cluster(client: Client):
    cluster = getattr(client, "cluster", None)
    return cluster if getattr(cluster, "detach", False) else None


def _keeping_futures(reconnect):
    async def _reconnect(self: Client):
        cluster = _detached_cluster(self)
        if cluster is None:
            return await reconnect(self)
        futures = self.futures
        # It cancels, then clears, every future before it reconnects: a stand-in for the dict meanwhile.
        self.futures = _KeptFutures(self)  # type: ignore[assignment]  # reads as the dict does, all _reconnect uses
        timeout, self._timeout = self._timeout, max(self._timeout, cluster.idle_timeout)
        try:
            await reconnect(self)
        finally:
            self.futures = futures
            self._timeout = timeout

    setattr(_reconnect, _MARK, True)
    return _reconnect


def apply() -> None:
    """Make clients of detached clusters keep their futures; applying again changes nothing."""
    warn_if_untested_distributed()  # the private method patched here may have changed
    if not getattr(Client._reconnect, _MARK, False):
        Client._reconnect = _keeping_futures(Client._reconnect)  # type: ignore[method-assign]  # patching it is the point
