"""The end-to-end suite: real batch systems in the docker testbeds.

Run it through `make test-<scheduler>`, which brings a testbed up and runs
the suite twice: on its login node (`--mode local`), and from this machine
submitting over SSH through the login node (`--mode ssh`; the testbed script
passes the ssh config, destination and the address compute nodes reach this
machine at in JQREF_SSH_CONFIG, JQREF_SSH_DESTINATION, JQREF_SCHEDULER_HOST).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from distributed import Client

from jqref import LocalRunner, SSHRunner

from .testbeds import TESTBEDS

#: Deadline for anything that involves starting jobs and workers on a busy 2-core machine.
PATIENCE = float(os.environ.get("JQREF_TEST_PATIENCE", 180))


#: Where job output goes: the shared home on every testbed node.
LOGS = "/home/dask/jqref-logs"


def pytest_addoption(parser):
    parser.addoption("--scheduler", default=os.environ.get("JQREF_SCHEDULER"), choices=sorted(TESTBEDS),
                     help="batch system of the testbed this suite runs against")
    parser.addoption("--mode", default="local", choices=["local", "ssh"],
                     help="local: run on the login node; ssh: submit over SSH from this machine")


def ssh_runner() -> SSHRunner:
    return SSHRunner(os.environ["JQREF_SSH_DESTINATION"], config_file=os.environ["JQREF_SSH_CONFIG"])


#: Where SSH mode's Dask scheduler runs: "client" (this process) or "login".
SCHEDULER_ON = os.environ.get("JQREF_SCHEDULER_ON", "client")


def mode_options(mode: str) -> dict:
    """Cluster options that differ between the modes."""
    if mode == "local":
        return {}
    ssh = {"python": "/opt/jqref/bin/python3"}  # the compute nodes' environment, not this machine's
    if SCHEDULER_ON == "login":
        # On the login node, listening where the compute nodes reach it. (The
        # client's hop is inside SSH; TLS has its own test in test_login_scheduler.)
        return {**ssh, "scheduler_on": "login", "scheduler_options": {"host": os.environ["JQREF_LOGIN_ADDRESS"]}}
    return {**ssh, "scheduler_options": {"host": os.environ["JQREF_SCHEDULER_HOST"]}}


def pytest_collection_modifyitems(config, items):
    if config.getoption("--scheduler") is None:
        skip = pytest.mark.skip(reason="needs a testbed: run `make test-<scheduler>` (or pass --scheduler)")
        for item in items:
            item.add_marker(skip)


def wait_for(condition, what: str, timeout: float = PATIENCE, interval: float = 0.5):
    """Poll `condition` until it returns something true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def job_records(tmp_path_factory):
    """Keep this run's job records (and those of the clients it kills) apart
    from earlier runs': a testbed brought up afresh hands out the same job ids
    again, and `jqref list` must show only what this run left."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def mode(request):
    return request.config.getoption("--mode")


@pytest.fixture(scope="session")
def runner(mode):
    """Where batch commands run, shared by the clusters and the testbed's checks."""
    runner = LocalRunner() if mode == "local" else ssh_runner()
    runner.run_blocking(["mkdir", "-p", LOGS]).check()
    yield runner
    asyncio.run(runner.close())


@pytest.fixture(scope="session")
def testbed(request, runner):
    return TESTBEDS[request.config.getoption("--scheduler")](runner)


@pytest.fixture
def job_name(request):
    """A job name unique to the test, so queue checks see only its jobs."""
    return f"jq-{request.node.name[5:25].strip('_[]')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def cluster_options(testbed, job_name, mode):
    """The suite's defaults for clusters."""
    return dict(cores=1, memory="512MiB", queue=testbed.queue, job_name=job_name, death_timeout=30,
                poll_interval="1s", log_directory=LOGS, dashboard_address=":0", **mode_options(mode))


@pytest.fixture
def make_cluster(testbed, job_name, cluster_options, runner):
    """Clusters with the suite's defaults; closed after the test, and the
    queue must then hold none of their jobs."""
    clusters = []

    def make(**kwargs):
        cluster = testbed.cluster_cls(**{"runner": runner, **cluster_options, **kwargs})
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()
    assert testbed.active_jobs(job_name) == set(), "jobs left in the queue after close()"


@pytest.fixture
def client_for():
    clients = []

    def connect(cluster):
        clients.append(Client(cluster))
        return clients[-1]

    yield connect
    for c in clients:
        c.close()


def worker_count(client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def worker_names(client) -> set[str]:
    return {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}


def start_and_kill_client(scheduler: str, mode: str, options: dict, jobs: int, workers: int) -> set[str]:
    """Run a client in its own process until `workers` workers are up, then
    SIGKILL it (nothing gets to cancel anything). Returns its job ids."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.client_to_kill", scheduler, mode, json.dumps(options),
         str(jobs), str(workers)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": repo},
    )
    try:
        return set(json.loads(proc.stdout.readline()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def container(service: str) -> str:
    return f"{os.environ['JQREF_TESTBED_PROJECT']}-{service}-1"


def in_container(service: str, *argv: str) -> subprocess.CompletedProcess:
    """Act on a testbed node from outside any SSH connection (as the network
    would): needs docker, so only where the suite runs on the host (SSH mode)."""
    return subprocess.run(["docker", "exec", container(service), *argv], capture_output=True, text=True)


def docker(*argv: str) -> str:
    """Run a docker command on this machine (SSH mode only); fail with its stderr."""
    done = subprocess.run(["docker", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"docker {' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def needs_docker(mode: str, fault: str) -> None:
    """Skip in local mode: the suite runs as an unprivileged user inside the
    login container there, with no docker and no root (no sudo) to cause `fault`."""
    if mode != "ssh":
        pytest.skip(f"{fault} needs docker on the host (root on the nodes): SSH mode only; "
                    "local mode runs as the unprivileged user dask in the login container")
