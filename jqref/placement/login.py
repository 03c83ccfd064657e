"""The Dask scheduler on the login node, for clients the compute nodes cannot reach.

With ``scheduler_on="login"``, a cluster driven over SSH starts its scheduler
on the login node (`login_main`, over the same connection) and
talks to it through a forwarded local port. Workers connect to the login
node, which they can reach; this machine only ever connects out, over SSH.
By default the scheduler's lifetime is the SSH channel's: when the client
closes, crashes or loses the connection, the scheduler ends, the workers
follow after their death-timeout, and their jobs end with them. A detached
one (``detach=True``) outlives the channel, so that a client can reconnect
or attach again, until nobody has been in touch for its idle timeout.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import logging
from typing import TYPE_CHECKING, Any

from distributed.security import Security

from ..runners import CommandError
from ..tls import role_options
from .forwarded import ForwardedScheduler

if TYPE_CHECKING:
    from ..ssh import SSHRunner
    from ..ssh_process import RemoteProcess

logger = logging.getLogger(__name__)


def source(module: str) -> str:
    """The source of one of this folder's modules, for processes without jqref."""
    return importlib.resources.files(__package__).joinpath(f"{module}.py").read_text()


#: Where the session keeper runs as a preload of its own (`job`), its source alone.
KEEPER_SOURCE = source("session_keeper")
#: The program the login node runs: `login_main`, after the session keeper it uses.
MAIN_SOURCE = KEEPER_SOURCE + "\n" + source("login_main")


class LoginNodeScheduler(ForwardedScheduler):
    """A SpecCluster scheduler entry: `address` is where workers connect (on
    the login node), `external_address` where this process does (a local
    forwarded port)."""

    def __init__(
        self,
        runner: SSHRunner,
        python: list[str],
        options: dict,
        security: Security | None = None,
        start_timeout: float = 120,
        session: dict | None = None,
        running: dict | None = None,
    ):
        """`session` ({"directory", "idle_timeout", "cancel_command"}) detaches
        the scheduler; `running` is the state of a detached one to attach to
        instead of starting one."""
        super().__init__(runner, options, security, start_timeout)
        self.runner: SSHRunner = runner  # narrowed: it spawns the scheduler, as well as forwarding to it
        self.session = session
        self.running = running
        self.python = python
        self.process: RemoteProcess | None = None
        self.pid: int | None = None

    async def start(self) -> None:
        started = self.running or await self._start_remote()
        self.pid = started["pid"]
        # Its dashboard listens on the login node's loopback only: the forward is the way in.
        dashboard = ("127.0.0.1", started["dashboard_port"]) if started["dashboard_port"] else None
        self._reach(started["address"], dashboard, directly=False)
        await super().start()

    async def _start_remote(self) -> dict[str, Any]:
        spec = {
            "options": self.options,
            "session": self.session,
            "security": role_options(self.security, "scheduler") if self.security else None,
        }
        # Through sh, so that `python` expands as it does in job scripts ($HOME/...): its
        # words are rendered by the policy in `shell`; the source is an argument, never shell text.
        command = ["sh", "-c", f'exec {" ".join(self.python)} -c "$1"', "jqref-scheduler", MAIN_SOURCE]
        process = self.process = await asyncio.to_thread(self.runner.spawn, command, stdin=json.dumps(spec) + "\n")
        try:
            return json.loads(await asyncio.to_thread(process.read_line, self.start_timeout))
        except (CommandError, ValueError) as e:
            process.close()
            raise RuntimeError(
                f"the Dask scheduler on the login node ({self.runner.destination}) did not start: {e}\n"
                f"It runs {' '.join(self.python)} there, which needs the workers' environment "
                "(the same Python and distributed as this one)."
            ) from None

    async def close(self) -> None:
        """Called once SpecCluster told the scheduler to close: wait for it to be gone."""
        self._close_forwards()
        if self.session is not None and self.pid is not None:
            await self._wait_detached_gone()
        elif self.process is not None:
            self.process.close_stdin()
            if not await asyncio.to_thread(self.process.wait, 30):
                try:
                    await self.runner.run(["kill", str(self.pid)])
                except (CommandError, ConnectionError) as e:
                    logger.warning(
                        "could not stop the scheduler on the login node (pid %s): %s; it exits on its "
                        "own once its SSH channel is gone",
                        self.pid,
                        e,
                    )
            self.process.close()
        await super().close()

    async def _wait_detached_gone(self, timeout: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while (await self.runner.run(["kill", "-0", str(self.pid)])).ok:
                if asyncio.get_running_loop().time() > deadline:
                    await self.runner.run(["kill", str(self.pid)])
                    return
                await asyncio.sleep(0.5)
        except (CommandError, ConnectionError) as e:
            logger.warning(
                "could not check that the detached scheduler on the login node (pid %s) ended: %s; "
                "it closes on its own after its idle timeout",
                self.pid,
                e,
            )
