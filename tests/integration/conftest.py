"""The end-to-end suite: real batch systems in the docker testbeds.

Run it through `make test-<scheduler>`, which brings a testbed up and runs
pytest on its login node (`--scheduler` names the batch system).
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from distributed import Client

from jqref import LocalRunner

from .testbeds import TESTBEDS

#: Deadline for anything that involves starting jobs and workers on a busy 2-core machine.
PATIENCE = float(os.environ.get("JQREF_TEST_PATIENCE", 180))


def pytest_addoption(parser):
    parser.addoption("--scheduler", default=os.environ.get("JQREF_SCHEDULER"), choices=sorted(TESTBEDS),
                     help="batch system of the testbed this suite runs against")


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


@pytest.fixture(scope="session")
def testbed(request):
    return TESTBEDS[request.config.getoption("--scheduler")](LocalRunner())


@pytest.fixture
def job_name(request):
    """A job name unique to the test, so queue checks see only its jobs."""
    return f"jq-{request.node.name[5:25].strip('_[]')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def make_cluster(testbed, job_name, tmp_path_factory):
    """Clusters with the suite's defaults; closed after the test, and the
    queue must then hold none of their jobs."""
    clusters = []
    logs = os.path.expanduser("~/jqref-logs")
    os.makedirs(logs, exist_ok=True)

    def make(**kwargs):
        options = dict(cores=1, memory="512MiB", queue=testbed.queue, job_name=job_name,
                       death_timeout=30, poll_interval="1s", log_directory=logs, dashboard_address=":0")
        options.update(kwargs)
        cluster = testbed.cluster_cls(**options)
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
