"""Faults: jqref keeps its promises when the cluster misbehaves.

Each asserts on what the batch system and the Dask scheduler observe, with
deadlines.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import start_and_kill_client, wait_for, worker_count

pytestmark = pytest.mark.integration


def slow_square_fn():
    """A task function defined here, so it is pickled by value: the workers
    cannot import this test module."""

    def slow_square(x):
        import time

        time.sleep(0.5)
        return x * x

    return slow_square


def test_max_jobs_caps_scale_and_adapt(make_cluster, client_for, testbed, job_name):
    cluster = make_cluster(max_jobs=2)
    client = client_for(cluster)
    cluster.scale(jobs=4)
    assert len(cluster.worker_spec) == 2
    wait_for(lambda: len(testbed.active_jobs(job_name)) == 2, "2 jobs in the queue")

    cluster.adapt(minimum_jobs=0, maximum_jobs=10, interval="1s")
    futures = client.map(slow_square_fn(), range(40))
    seen = set()

    def done():
        seen.add(len(testbed.active_jobs(job_name)))
        return all(f.done() for f in futures)

    wait_for(done, "the work to finish under adapt")
    assert sum(client.gather(futures)) == sum(x * x for x in range(40))
    assert max(seen) <= 2, f"adapt had {max(seen)} jobs in the queue with max_jobs=2"


def test_walltime_with_worker_lifetime_retires_and_replaces_without_losing_work(
    make_cluster, client_for, testbed, job_name
):
    # Workers retire on their own well before the batch system would kill the
    # job; the finished job is noticed and replaced, and no task is lost.
    cluster = make_cluster(walltime="00:02:00", worker_extra_args=["--lifetime", "20s", "--lifetime-stagger", "4s"])
    client = client_for(cluster)
    cluster.scale(jobs=2)
    futures = client.map(slow_square_fn(), range(120), pure=False)
    assert sum(client.gather(futures)) == sum(x * x for x in range(120))
    wait_for(lambda: cluster.batch.submitted > 2, "a retired job to be replaced")
    wait_for(lambda: len(testbed.active_jobs(job_name)) == 2 and worker_count(client) == 2,
             "the cluster back at 2 jobs")


def test_client_crash_leaves_a_record_and_jqref_cleanup_cancels_its_jobs(testbed, job_name, cluster_options, mode):
    # Four two-core jobs: two run, two wait. The client dies; `jqref list`
    # shows what it left, `jqref cleanup` cancels it without waiting for
    # death-timeout.
    options = {**cluster_options, "cores": 2, "memory": "1GiB", "processes": 1, "death_timeout": 120}
    job_ids = start_and_kill_client(testbed.name, mode, options, jobs=4, workers=2)
    assert len(job_ids) == 4 and testbed.active_jobs(job_name) == job_ids
    listing = subprocess.run([sys.executable, "-m", "jqref", "list"], capture_output=True, text=True, check=True).stdout
    (record,) = [line.split()[0] for line in listing.splitlines() if "gone" in line and job_ids <= set(line.split())]
    cleanup = subprocess.run([sys.executable, "-m", "jqref", "cleanup", record], capture_output=True, text=True)
    assert cleanup.returncode == 0, cleanup.stderr
    assert f"cancelled {len(job_ids)} job(s)" in cleanup.stdout
    wait_for(lambda: not testbed.active_jobs(job_name), "the crashed client's jobs to be cancelled", timeout=60)
