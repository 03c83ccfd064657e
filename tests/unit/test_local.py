"""LocalCluster: jobs that are processes of this machine, started, tracked and
cancelled through real commands (bash, ps, kill), as a batch system would."""

from __future__ import annotations

import os
import time

from distributed import Client

from jqref import LocalCluster
from jqref.job import JobState


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: its reaper just has not run.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_jobs_run_as_process_groups_are_polled_and_leave_nothing_after_close(tmp_path):
    with (
        LocalCluster(
            cores=1,
            memory="1GiB",
            processes=1,
            poll_interval="0.2s",
            log_directory=str(tmp_path),
            scheduler_options={"dashboard_address": ":0"},
        ) as cluster,
        Client(cluster) as client,
    ):
        cluster.scale(jobs=2)
        client.wait_for_workers(2, timeout=60)
        assert client.submit(sum, [1, 2, 3]).result() == 6
        pids = [int(job_id) for job_id in cluster.batch.active]
        assert len(pids) == 2 and all(alive(pid) and os.getpgid(pid) == pid for pid in pids)
        assert all(job.state is JobState.RUNNING for job in cluster.batch.active.values())
        assert len(list(tmp_path.glob("dask-worker-*.out"))) == 2  # each job's output
        # A job killed from outside is seen ended and replaced.
        os.killpg(pids[0], 9)
        wait_for(
            lambda: pids[0] not in map(int, cluster.batch.active) and len(cluster.batch.active) == 2,
            "the killed job to be replaced",
        )
        pids = [int(job_id) for job_id in cluster.batch.active]
    wait_for(lambda: not any(alive(pid) for pid in pids), "every job's processes to be gone after close()")
