"""A testbed's containers through the Docker SDK: exec, kill, start, addresses.

Containers are found by their compose labels (project and service), so this
works for any project name a testbed was brought up with."""

from __future__ import annotations

import docker
import docker.errors
from docker.models.containers import Container


class Containers:
    def __init__(self, project: str):
        self.project = project
        try:
            self.client = docker.from_env()
            self.client.ping()
        except docker.errors.DockerException as e:
            raise RuntimeError(f"the testbed needs a running Docker engine (make provision starts one): {e}") from None

    def get(self, service: str) -> Container:
        found = self.client.containers.list(
            all=True,
            filters={"label": [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]},
        )
        if not found:
            raise LookupError(
                f"no container for service {service!r} in compose project {self.project!r}: is the testbed up?"
            )
        return found[0]

    def running(self, service: str) -> bool:
        try:
            return self.get(service).status == "running"
        except LookupError:
            return False

    def exec(self, service: str, *argv: str, user: str = "root", check: bool = True, **kwargs) -> tuple[int, str, str]:
        """Run `argv` in `service`'s container; with `check`, fail naming the
        command and its stderr when it exits non-zero."""
        code, (out, err) = self.get(service).exec_run(list(argv), user=user, demux=True, **kwargs)
        out, err = (out or b"").decode(), (err or b"").decode()
        if check and code != 0:
            raise AssertionError(f"{' '.join(argv)!r} exited {code} on {service}: {err.strip() or out.strip()}")
        return code, out, err

    def kill(self, service: str) -> None:
        self.get(service).kill()

    def start(self, service: str) -> None:
        self.get(service).start()

    def network(self, name: str) -> dict:
        return self.client.networks.get(f"{self.project}_{name}").attrs

    def address(self, service: str, network: str | None = None) -> str:
        """`service`'s address on the project's `network`, or on its only one."""
        networks = self.get(service).attrs["NetworkSettings"]["Networks"]
        if network is not None:
            return networks[f"{self.project}_{network}"]["IPAddress"]
        return next(iter(networks.values()))["IPAddress"]

    def gateway(self, network: str = "default") -> str:
        """The address containers on `network` reach this machine at."""
        return "".join(config.get("Gateway", "") for config in self.network(network)["IPAM"]["Config"])
