"""A Dask scheduler that runs elsewhere than the client: on the login node, or in a batch job.

Workers connect to its `address`; this process connects to its
`external_address`: the same address when it can open a connection there,
else a local port forwarded over the runner's SSH connection (`SSHRunner.forward`),
which reaches whatever the login node reaches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distributed.comm import parse_address
from distributed.comm.addressing import parse_host_port
from distributed.deploy.spec import ProcessInterface
from distributed.security import Security

if TYPE_CHECKING:
    from ..port_forward import PortForward
    from ..runners import Runner


class ForwardedScheduler(ProcessInterface):
    """A SpecCluster scheduler entry for a scheduler started elsewhere with `options`."""

    def __init__(self, runner: Runner, options: dict, security: Security | None, start_timeout: float):
        super().__init__()
        self.runner = runner
        self.options = options
        self.security = security
        self.start_timeout = start_timeout
        self.external_address: str | None = None
        self.dashboard_link = ""
        self._forwards: list[PortForward] = []

    def _reach(self, address: str, dashboard: tuple[str, int] | None, directly: bool) -> None:
        """Set where this process talks to the scheduler at `address` and sees
        its `dashboard` (host and port, if it has one): there, or through forwards."""
        self.address = address
        protocol, location = parse_address(address)
        host, port = parse_host_port(location)
        if directly:
            self.external_address = address
            self.dashboard_link = f"http://{dashboard[0]}:{dashboard[1]}/status" if dashboard else ""
            return
        self.external_address = f"{protocol}://127.0.0.1:{self._forward(host, port)}"
        self.dashboard_link = f"http://127.0.0.1:{self._forward(*dashboard)}/status" if dashboard else ""

    def _forward(self, host: str, port: int) -> int:
        """A local port forwarded to `host`:`port` as the login node reaches it."""
        forward = self.runner.forward(host, port)  # type: ignore[attr-defined]  # an SSHRunner: the placement checks
        self._forwards.append(forward)
        return forward.local_port

    def _close_forwards(self) -> None:
        for forward in self._forwards:
            forward.close()
