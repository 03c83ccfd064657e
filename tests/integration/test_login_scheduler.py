"""The scheduler on the login node (``scheduler_on="login"``), for clients the
compute nodes cannot reach. Runs in SSH mode; the isolated testbed
(``ISOLATED=1``: compute nodes cannot connect to this machine at all) is
where it matters, and where the scheduler-here mode must fail clearly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from distributed import Client

from jqref.records import records_dir

from .conftest import client_process, node_containers, start_and_kill_client, wait_for, worker_count
from .intruder import CONNECT_WITHOUT_THE_CERTIFICATE, REFUSED

pytestmark = [
    pytest.mark.integration,
    pytest.mark.isolated("the Dask scheduler on the login node (scheduler_on='login')"),
]


def scheduler_processes(runner) -> list[str]:
    """Pids of the schedulers jqref started on the login node (their source is their command line)."""
    return runner.run_blocking(["pgrep", "-u", "dask", "-f", "async def serve.spec"]).stdout.split()


def test_workers_reach_the_login_node_and_the_dashboard_is_forwarded(make_cluster, client_for, runner):
    cluster = make_cluster()
    client = client_for(cluster)
    assert cluster.scheduler_address.startswith("tls://127.0.0.1:"), "the client talks through the forward, with TLS"
    cluster.scale(jobs=2)
    wait_for(lambda: worker_count(client) == 2, "2 workers connected to the login node's scheduler")
    assert client.submit(lambda x: x + 1, 41).result() == 42
    with urllib.request.urlopen(cluster.dashboard_link, timeout=30) as page:
        assert page.status == 200
    assert len(scheduler_processes(runner)) == 1
    cluster.close()
    wait_for(lambda: not scheduler_processes(runner), "the remote scheduler to exit on close")


def test_tls_between_client_scheduler_and_workers_by_default(make_cluster, client_for):
    # With nannies (the default): before jqref cleared OpenSSL's error queue
    # (ssl_error_queue), most runs here lost every connection soon after the
    # workers registered. Every test in this module runs with TLS as well.
    cluster = make_cluster()
    client = client_for(cluster)
    cluster.scale(jobs=2)
    wait_for(lambda: worker_count(client) == 2, "2 workers connected over TLS")
    assert cluster.scheduler.address.startswith("tls://") and cluster.scheduler_address.startswith("tls://127.0.0.1:")
    assert all(w.startswith("tls://") for w in client.scheduler_info(n_workers=-1)["workers"])
    assert sum(client.gather(client.map(lambda x: x * x, range(20)))) == sum(x * x for x in range(20))


#: Run on the login node by someone without the cluster's certificate: a Dask
#: client over plain TCP, and a TLS client that presents no certificate.
def test_on_the_login_node_clients_without_the_cluster_certificate_are_refused(make_cluster, runner, cluster_options):
    cluster = make_cluster()
    attempt = runner.run_blocking(
        [cluster_options["python"], "-c", CONNECT_WITHOUT_THE_CERTIFICATE, cluster.scheduler.address], timeout=120
    ).check()
    assert attempt.stdout.splitlines() == REFUSED, attempt.stdout + attempt.stderr


def test_killed_client_takes_the_remote_scheduler_and_then_the_jobs_with_it(
    testbed, job_name, cluster_options, mode, runner
):
    job_ids, _ = start_and_kill_client(testbed.name, mode, {**cluster_options, "death_timeout": 15}, jobs=2, workers=2)
    assert len(job_ids) == 2
    wait_for(
        lambda: not scheduler_processes(runner), "the remote scheduler to exit with its SSH connection", timeout=60
    )
    wait_for(lambda: not testbed.active_jobs(job_name), "the jobs to end after death-timeout", timeout=15 + 90)


@pytest.mark.isolated("compute nodes that cannot reach this machine")
def test_scheduler_here_fails_with_a_diagnosis_when_compute_nodes_cannot_reach_it(
    make_cluster, testbed, job_name, caplog
):
    cluster = make_cluster(
        scheduler_on="client", death_timeout=10, scheduler_options={"host": os.environ["JQREF_SCHEDULER_HOST"]}
    )
    caplog.set_level(logging.WARNING, logger="jqref.cluster")
    cluster.scale(jobs=1)
    wait_for(
        lambda: (
            cluster.batch.submitted == cluster.max_failed_starts
            and not testbed.active_jobs(job_name)
            and f"{cluster.max_failed_starts} failed starts in a row" in caplog.text
        ),
        "jqref to give up replacing jobs whose workers never connected",
    )
    assert "scheduler_on='login'" in caplog.text and cluster.scheduler.address in caplog.text
    assert not cluster.worker_spec


# ---- detached (detach=True): the scheduler outlives its SSH connection ------------


def session_state(runner, record: str) -> dict:
    return json.loads(runner.run_blocking(["cat", f".jqref/sessions/{record}/state.json"]).check().stdout)


def test_a_detached_cluster_carries_on_over_a_cut_connection(make_cluster, client_for, testbed, job_name):
    cluster = make_cluster(detach=True)
    client = client_for(cluster)
    cluster.scale(jobs=2)
    wait_for(lambda: worker_count(client) == 2, "2 workers")
    workers = set(client.scheduler_info(n_workers=-1)["workers"])

    def square_slowly(x):
        import time

        time.sleep(0.5)
        return x * x

    futures = client.map(square_slowly, range(40))  # 10 s of work on two workers
    wait_for(lambda: any(f.done() for f in futures), "the computation to be under way")
    nodes = node_containers()
    for service in [s for s in ("login", "bastion") if nodes.running(s)]:
        nodes.exec(service, "pkill", "-KILL", "-u", "dask", "-x", "sshd-session", check=False)
    assert not all(f.done() for f in futures), "the cut came after the computation"
    assert sum(client.gather(futures)) == sum(x * x for x in range(40))
    assert set(client.scheduler_info(n_workers=-1)["workers"]) == workers, "the same workers did the rest"
    assert cluster.batch.submitted == 2 and set(cluster.batch.active) == testbed.active_jobs(job_name)


def test_a_detached_session_outlives_its_client_and_is_attached_to_again(
    testbed, job_name, cluster_options, mode, runner
):
    job_ids, record = start_and_kill_client(
        testbed.name, mode, {**cluster_options, "detach": True}, jobs=2, workers=2, publish=True
    )
    assert len(scheduler_processes(runner)) == 1 and testbed.active_jobs(job_name) == job_ids
    listing = subprocess.run([sys.executable, "-m", "jqref", "list"], capture_output=True, text=True, check=True).stdout
    assert f"attachable: {testbed.cluster_cls.__name__}.attach('{record}')" in listing, listing

    # Only the owner gets in: another user on the login node reads none of the
    # session's state and cannot connect to the scheduler.
    address = session_state(runner, record)["address"]
    nodes = node_containers()
    status, _, _ = nodes.exec(
        "login", "cat", f"/home/dask/.jqref/sessions/{record}/state.json", user="nobody", check=False
    )
    assert status != 0, "another user read the session's state"
    _, out, err = nodes.exec(
        "login", cluster_options["python"], "-c", CONNECT_WITHOUT_THE_CERTIFICATE, address, user="nobody", check=False
    )
    assert out.splitlines() == REFUSED, out + err

    cluster = testbed.cluster_cls.attach(record)
    try:
        client = Client(cluster)
        assert client.get_dataset("answer").result() == 42, "the published result is still there"
        assert set(cluster.batch.active) == job_ids and worker_count(client) == 2
        cluster.scale(jobs=3)
        wait_for(lambda: worker_count(client) == 3, "a third worker for the attached cluster")
        assert cluster.batch.submitted == 1
        client.close()
    finally:
        cluster.close()
    assert not testbed.active_jobs(job_name), "jobs left after the attached cluster closed"
    assert not scheduler_processes(runner), "the detached scheduler is still running after close()"


def test_a_detached_scheduler_left_alone_cancels_its_jobs_and_ends(testbed, job_name, cluster_options, mode, runner):
    # The client's process is stopped, as on a laptop asleep. Its workers would
    # wait ten minutes for a lost scheduler: only the cancel ends their jobs in time.
    options = {**cluster_options, "detach": True, "idle_timeout": 20, "death_timeout": 600}
    with client_process(testbed.name, mode, options, jobs=2, workers=2) as (client, job_ids, record):
        client.send_signal(signal.SIGSTOP)
        assert len(scheduler_processes(runner)) == 1 and testbed.active_jobs(job_name) == job_ids
        wait_for(
            lambda: not testbed.active_jobs(job_name) and not scheduler_processes(runner),
            "the scheduler to cancel its jobs and end after 20 s alone",
            timeout=20 + 90,
        )
        assert not runner.run_blocking(["test", "-e", f".jqref/sessions/{record}"]).ok, "the session's state is left"
        client.send_signal(signal.SIGCONT)  # the laptop wakes up: its cluster finds the scheduler gone and closes
        wait_for(
            lambda: not (records_dir() / f"{record}.json").exists(), "the woken client's cluster to close", timeout=120
        )
