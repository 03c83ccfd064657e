"""The Dask scheduler in a batch job of its own (``scheduler_on="job"``), for
sites that end long-running processes on login nodes. On the isolated
testbeds, over SSH: the compute nodes cannot reach this machine. This
machine can reach them on the testbed, and the first test connects
directly; for the others (as for a laptop outside the site) it cannot open a
connection to them either, and reaches the scheduler's job only through a
port forwarded from the login node.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from distributed import Client
from distributed.client import FutureCancelledError
from distributed.core import Status

from .conftest import client_process, node_containers, start_and_kill_client, wait_for, worker_count

pytestmark = [
    pytest.mark.integration,
    pytest.mark.isolated("the scheduler's job reached through the login node (scheduler_on='job')"),
    pytest.mark.schedulers("slurm", "sge"),
]

#: The age past which the reaper ends a user's process on the login node.
LOGIN_LIMIT = 15


def iptables(*args: str) -> subprocess.CompletedProcess:
    """iptables as testbed.sh runs it: as root, or through sudo."""
    command = ["iptables", *args] if os.geteuid() == 0 else ["sudo", "iptables", *args]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture(scope="module")
def compute_network_out_of_reach():
    """No new connection from this machine to the compute nodes' network (the
    login node's sshd stays reachable on its other one), removed after the module."""
    project = os.environ["JQREF_TESTBED_PROJECT"]
    bridge = "br-" + node_containers().network("default")["Id"][:12]
    rule = ["OUTPUT", "-o", bridge, "-m", "conntrack", "--ctstate", "NEW"]
    rule += ["-m", "comment", "--comment", f"{project}-out-of-reach", "-j", "REJECT"]
    added = iptables("-I", *rule)
    assert added.returncode == 0, f"could not keep this machine off the compute network: {added.stderr}"
    yield
    iptables("-D", *rule)


def job_options_for_test() -> dict:
    """The scheduler in a small job, listening where the compute nodes are (no host: its node's address)."""
    return {
        "scheduler_on": "job",
        "scheduler_options": {"dashboard_address": ":0"},
        "scheduler_job": {"memory": "512MiB", "start_timeout": 120},
    }


@pytest.fixture
def job_options() -> dict:
    return job_options_for_test()


def exists(runner, path: str) -> bool:
    return runner.run_blocking(["test", "-e", path]).ok


def test_a_client_that_reaches_the_compute_nodes_connects_directly(make_cluster, client_for, job_options):
    # First in the module: before compute_network_out_of_reach, which stays until the module ends.
    cluster = make_cluster(**job_options)
    assert cluster.scheduler.reached == "directly"
    assert cluster.scheduler_address == cluster.scheduler.address, "no forward"
    assert client_for(cluster).scheduler_info()["address"] == cluster.scheduler.address
    with urllib.request.urlopen(cluster.dashboard_link, timeout=30) as page:
        assert page.status == 200


@pytest.mark.usefixtures("compute_network_out_of_reach")
def test_compute_scale_adapt_and_close_leave_nothing(make_cluster, client_for, testbed, job_name, runner, job_options):
    cluster = make_cluster(**job_options)
    scheduler = cluster.scheduler
    assert testbed.active_jobs(f"{job_name}-scheduler") == {scheduler.job_id}
    assert scheduler.reached == "through an SSH forward", "this machine cannot reach the compute network"
    assert cluster.scheduler_address.startswith("tls://127.0.0.1:"), "TLS, through the forward"
    assert not scheduler.address.startswith(("tls://127.", f"tls://{os.environ['JQREF_LOGIN_ADDRESS']}:"))
    files = [*scheduler.files.paths.values(), scheduler.scheduler_file]
    assert all(exists(runner, path) for path in files)
    client = client_for(cluster)
    cluster.scale(jobs=2)
    wait_for(lambda: worker_count(client) == 2, "2 workers connected to the scheduler's job")
    assert sum(client.gather(client.map(lambda x: x * x, range(20)))) == sum(x * x for x in range(20))
    with urllib.request.urlopen(cluster.dashboard_link, timeout=30) as page:
        assert page.status == 200
    cluster.adapt(minimum_jobs=0, maximum_jobs=1, interval="1s", wait_count=2)
    wait_for(lambda: worker_count(client) == 0 and not testbed.active_jobs(job_name), "adapt to retire both jobs")
    assert client.submit(lambda x: x + 1, 41).result(timeout=120) == 42, "adapt starts a job for the work"
    cluster.close()
    assert testbed.active_jobs(f"{job_name}-scheduler") == set(), "close() cancels the scheduler's job"
    assert testbed.active_jobs(job_name) == set()
    assert not [path for path in files if exists(runner, path)], "its key, preloads, log and address file removed"


def close_after_its_scheduler_is_gone(client) -> None:
    """Close a client whose scheduler has gone: its attempts to reconnect may
    raise (tornado's ValueError on a forward whose far end refuses)."""
    with contextlib.suppress(OSError, ValueError):
        client.close()


@pytest.mark.usefixtures("compute_network_out_of_reach")
def test_scheduler_job_cancelled_from_outside_is_reported_and_leaves_nothing(
    make_cluster, testbed, job_name, caplog, job_options
):
    cluster = make_cluster(**job_options)
    client = Client(cluster, timeout=10)  # a short reconnect timeout: the scheduler is not coming back
    cluster.scale(jobs=1)
    wait_for(lambda: worker_count(client) == 1, "a worker connected to the scheduler's job")
    scheduler_job = cluster.scheduler.job_id
    with caplog.at_level(logging.ERROR, logger="jqref.cluster"):
        testbed.cancel(scheduler_job)
        wait_for(lambda: cluster.status.name == "closed", "the cluster to close after its scheduler's job ended")
    assert f"the Dask scheduler's job {scheduler_job} ended" in caplog.text
    assert "cancelling the workers' jobs and closing the cluster" in caplog.text
    with pytest.raises(RuntimeError, match=f"is closed: the Dask scheduler's job {scheduler_job} ended"):
        cluster.scale(jobs=1)
    assert testbed.active_jobs(job_name) == set(), "its workers' jobs cancelled"
    assert testbed.active_jobs(f"{job_name}-scheduler") == set()
    close_after_its_scheduler_is_gone(client)


@pytest.mark.usefixtures("compute_network_out_of_reach")
def test_a_scheduler_job_that_fails_to_start_says_why_and_leaves_nothing(testbed, job_name, cluster_options, runner):
    options = {**cluster_options, **job_options_for_test(), "python": "/no/such/python3"}
    with pytest.raises(RuntimeError) as failed:
        testbed.cluster_cls(runner=runner, **options)
    message = str(failed.value)
    assert "the Dask scheduler's job" in message and "ended before the scheduler listened" in message
    assert "/no/such/python3" in message, "the tail of its stderr says what went wrong"
    assert testbed.active_jobs(f"{job_name}-scheduler") == set()


@pytest.mark.usefixtures("compute_network_out_of_reach")
def test_a_crashed_clients_scheduler_job_is_cancelled_by_jqref_cleanup(testbed, job_name, cluster_options, mode):
    options = {**cluster_options, **job_options_for_test()}
    job_ids, record = start_and_kill_client(testbed.name, mode, options, jobs=1, workers=1)
    (scheduler_job,) = testbed.active_jobs(f"{job_name}-scheduler")
    status = subprocess.run([sys.executable, "-m", "jqref", "status", record], capture_output=True, text=True)
    assert f"scheduler:    job {scheduler_job} (scheduler_on='job')" in status.stdout
    cleanup = subprocess.run([sys.executable, "-m", "jqref", "cleanup", record], capture_output=True, text=True)
    assert cleanup.returncode == 0, cleanup.stderr
    assert f"cancelled 2 job(s): {' '.join([*job_ids, scheduler_job])}" in cleanup.stdout
    wait_for(
        lambda: not testbed.active_jobs(job_name) and not testbed.active_jobs(f"{job_name}-scheduler"),
        "the crashed client's jobs, its scheduler's too, to be cancelled",
        timeout=60,
    )


@pytest.fixture
def login_limit():
    """A login node that kills user processes older than LOGIN_LIMIT seconds
    (`docker/login-reaper.sh`, run as root there), for the tests that ask for
    it, and for them alone: the tests after them get an ordinary login node."""
    containers = node_containers()
    _, pid, _ = containers.exec(
        "login",
        "bash",
        "-c",
        f"/src/docker/login-reaper.sh {LOGIN_LIMIT} dask >/tmp/login-reaper.log 2>&1 & echo $!",
    )
    yield containers
    containers.exec("login", "kill", pid.strip())


def reaped(containers) -> str:
    return containers.exec("login", "cat", "/tmp/login-reaper.log")[1]


@pytest.mark.usefixtures("compute_network_out_of_reach")
@pytest.mark.needs_docker("running a process reaper on the login node")
def test_where_the_login_node_ends_long_processes_the_login_scheduler_dies(
    login_limit, testbed, job_name, cluster_options, runner, caplog
):
    # The isolated suite's default placement: scheduler_on="login".
    cluster = testbed.cluster_cls(runner=runner, **cluster_options)
    assert cluster.scheduler_on == "login"
    client = Client(cluster, timeout=10)  # a short reconnect timeout: the scheduler is not coming back
    cluster.scale(jobs=1)
    assert client.submit(lambda x: x + 1, 1).result(timeout=LOGIN_LIMIT) == 2, "it works until the limit"
    running = client.submit(time.sleep, 120)
    with pytest.raises(FutureCancelledError, match="scheduler-connection-lost"):
        running.result(timeout=LOGIN_LIMIT + 30)
    assert "killed python" in reaped(login_limit), "the login node ended the scheduler"
    close_after_its_scheduler_is_gone(client)
    with caplog.at_level(logging.WARNING, logger="jqref.cluster"):
        cluster.close()
    assert "no longer answers" in caplog.text, "close() says why it closes without the scheduler"
    assert cluster.status == Status.closed
    assert not testbed.active_jobs(job_name), "close() cancelled the jobs"


@pytest.mark.usefixtures("compute_network_out_of_reach")
@pytest.mark.needs_docker("running a process reaper on the login node")
def test_where_the_login_node_ends_long_processes_the_scheduler_job_carries_on(
    login_limit, make_cluster, client_for, job_options
):
    started = time.monotonic()
    cluster = make_cluster(**job_options)
    client = client_for(cluster)
    cluster.scale(jobs=1)
    wait_for(
        lambda: time.monotonic() - started > LOGIN_LIMIT + 5 and worker_count(client) == 1,
        f"a worker, and more than the login node's {LOGIN_LIMIT} s limit",
    )
    assert client.submit(lambda x: x + 1, 1).result(timeout=60) == 2
    assert cluster.status.name == "running"


# ---- detached (detach=True): the scheduler's job outlives its client ------------


def session_is_gone(runner, record: str) -> bool:
    """Whether the session's directory (its state, the scheduler's files) is gone from the shared home."""
    return not exists(runner, f".jqref/sessions/{record}")


def session_state(runner, record: str) -> dict:
    """What the session's keeper wrote: its address, the jobs it was told about."""
    return json.loads(runner.run_blocking(["cat", f".jqref/sessions/{record}/state.json"]).check().stdout)


def jqref_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jqref", *args], capture_output=True, text=True)


# The scheduler's keeper cancels jobs from the compute node it runs on: Slurm's commands work there.
@pytest.mark.schedulers("slurm")
@pytest.mark.usefixtures("compute_network_out_of_reach")
def test_a_detached_scheduler_job_outlives_its_client_and_is_attached_to_again(
    testbed, job_name, cluster_options, mode, runner
):
    options = {**cluster_options, **job_options_for_test(), "detach": True}
    with client_process(testbed.name, mode, options, jobs=1, workers=1, publish=True) as (client, job_ids, record):
        # Ctrl-C: it exits through its atexit handlers, which leave a detached cluster, scheduler's job included.
        client.send_signal(signal.SIGINT)
        try:
            client.wait(timeout=60)
        except subprocess.TimeoutExpired:
            client.send_signal(signal.SIGUSR1)  # its threads' stacks, to stderr
            with contextlib.suppress(subprocess.TimeoutExpired):
                client.wait(timeout=5)
            raise
    (scheduler_job,) = testbed.active_jobs(f"{job_name}-scheduler")
    assert testbed.active_jobs(job_name) == job_ids, "the workers' jobs stay with the scheduler of the client gone"
    listing = jqref_command("list").stdout
    assert f"attachable: {testbed.cluster_cls.__name__}.attach('{record}')" in listing, listing

    cluster = testbed.cluster_cls.attach(record)
    try:
        assert cluster.scheduler_on == "job" and cluster.scheduler.job_id == scheduler_job
        assert cluster.scheduler.reached == "through an SSH forward"
        client = Client(cluster)
        assert client.get_dataset("answer").result(timeout=60) == 42, "the published result is still there"
        assert set(cluster.batch.active) == job_ids and worker_count(client) == 1
        assert sum(client.gather(client.map(lambda x: x * x, range(20)))) == sum(x * x for x in range(20))
        client.close()
    finally:
        cluster.close()
    assert testbed.active_jobs(job_name) == set(), "the workers' jobs cancelled by close()"
    assert testbed.active_jobs(f"{job_name}-scheduler") == set(), "and the scheduler's job"
    assert session_is_gone(runner, record), "the session's state and the scheduler's files removed"
    assert record not in jqref_command("list").stdout


@pytest.mark.schedulers("slurm")
@pytest.mark.usefixtures("compute_network_out_of_reach")
def test_a_detached_scheduler_job_left_alone_cancels_its_workers_and_ends(
    testbed, job_name, cluster_options, mode, runner
):
    options = {**cluster_options, **job_options_for_test(), "detach": True, "idle_timeout": 15}
    with client_process(testbed.name, mode, options, jobs=1, workers=1) as (_, job_ids, record):
        # Killed once its heartbeat told the scheduler of the worker's job, which the scheduler then cancels.
        wait_for(lambda: set(session_state(runner, record)["jobs"]) == job_ids, "the scheduler to know the job")
    (scheduler_job,) = testbed.active_jobs(f"{job_name}-scheduler")
    assert testbed.active_jobs(job_name) == job_ids
    wait_for(
        lambda: not testbed.active_jobs(job_name) and not testbed.active_jobs(f"{job_name}-scheduler"),
        "the scheduler to cancel its workers' jobs and end its own after 15 s alone",
        timeout=15 + 90,
    )
    # Workers whose scheduler closed would end by themselves: the accounting tells the keeper's cancel apart.
    wait_for(
        lambda: [testbed.final_state(job_id) for job_id in [*job_ids, scheduler_job]] == ["CANCELLED", "COMPLETED"],
        "the accounting to say the worker's job was cancelled and the scheduler's ended by itself",
        timeout=60,
    )
    wait_for(lambda: session_is_gone(runner, record), "the session's directory to be removed", timeout=30)
    cleanup = jqref_command("cleanup", record)
    assert cleanup.returncode == 0, cleanup.stderr
    assert f"cancelled 2 job(s): {' '.join([*job_ids, scheduler_job])}" in cleanup.stdout, "they had ended already"
    assert record not in jqref_command("list").stdout
