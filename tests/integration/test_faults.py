"""Faults: jqref keeps its promises when the cluster misbehaves.

Each asserts on what the batch system and the Dask scheduler observe, with
deadlines.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from .conftest import LOGS, PATIENCE, start_and_kill_client, wait_for, worker_count

pytestmark = pytest.mark.integration


def slow_square_fn():
    """A task function defined here, so it is pickled by value: the workers
    cannot import this test module."""

    def slow_square(x):
        import time

        time.sleep(0.5)
        return x * x

    return slow_square


@pytest.mark.placement_independent
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


@pytest.mark.placement_independent
def test_walltime_with_worker_lifetime_retires_and_replaces_without_losing_work(
    make_cluster, client_for, testbed, job_name, cluster_options
):
    # Workers retire on their own well before the batch system would kill the
    # job; the finished job is noticed and replaced, and no task is lost. When
    # both workers retire before a replacement starts (Grid Engine starts jobs
    # slowly), the retirement cannot move their data and distributed counts it
    # against their tasks as a death: more than its default of 3 must not
    # fail the computation.
    scheduler_options = {**cluster_options.get("scheduler_options", {}), "allowed_failures": 20}
    cluster = make_cluster(
        walltime="00:02:00",
        worker_extra_args=["--lifetime", "20s", "--lifetime-stagger", "4s"],
        scheduler_options=scheduler_options,
    )
    client = client_for(cluster)
    cluster.scale(jobs=2)
    futures = client.map(slow_square_fn(), range(120), pure=False)
    assert sum(client.gather(futures)) == sum(x * x for x in range(120))
    wait_for(lambda: cluster.batch.submitted > 2, "a retired job to be replaced")
    wait_for(
        lambda: len(testbed.active_jobs(job_name)) == 2 and worker_count(client) == 2, "the cluster back at 2 jobs"
    )


@pytest.mark.placement_independent
def test_client_crash_leaves_a_record_and_jqref_cleanup_cancels_its_jobs(testbed, job_name, cluster_options, mode):
    # Four two-core jobs: two run, two wait. The client dies; `jqref list`
    # shows what it left, `jqref cleanup` cancels it without waiting for
    # death-timeout.
    options = {**cluster_options, "cores": 2, "memory": "1GiB", "processes": 1, "death_timeout": 120}
    job_ids, _ = start_and_kill_client(testbed.name, mode, options, jobs=4, workers=2)
    assert len(job_ids) == 4 and testbed.active_jobs(job_name) == job_ids
    listing = subprocess.run([sys.executable, "-m", "jqref", "list"], capture_output=True, text=True, check=True).stdout
    (record,) = [line.split()[0] for line in listing.splitlines() if "gone" in line and job_ids <= set(line.split())]
    cleanup = subprocess.run([sys.executable, "-m", "jqref", "cleanup", record], capture_output=True, text=True)
    assert cleanup.returncode == 0, cleanup.stderr
    assert f"cancelled {len(job_ids)} job(s)" in cleanup.stdout
    wait_for(lambda: not testbed.active_jobs(job_name), "the crashed client's jobs to be cancelled", timeout=60)


@pytest.mark.placement_independent
@pytest.mark.needs_docker("restarting the batch system's controller")
def test_controller_restart_is_not_a_job_outcome(make_cluster, client_for, testbed, job_name, caplog):
    # The controller goes down and comes back restarted while two jobs run and
    # two wait. Polls fail meanwhile; a failed poll is not a job outcome: no
    # job is replaced, the same jobs are there after, and scaling down leaves
    # nothing in the queue.
    cluster = make_cluster(cores=testbed.cpus_per_node, memory="1GiB", processes=1)  # a whole node each
    client = client_for(cluster)
    cluster.scale(jobs=4)
    client.wait_for_workers(2, timeout=PATIENCE)
    jobs = testbed.active_jobs(job_name)
    assert len(jobs) == 4
    with testbed.controller_down():
        wait_for(lambda: "polling the batch system failed" in caplog.text, "a poll to fail", timeout=120)
    polls = cluster.batch.polls
    wait_for(lambda: cluster.batch.polls >= polls + 3, "polls to succeed again", timeout=120)
    assert cluster.batch.submitted == 4, "a job was replaced because a poll failed"
    assert set(cluster.batch.active) == jobs and testbed.active_jobs(job_name) == jobs
    assert worker_count(client) == 2
    cluster.scale(0)
    wait_for(lambda: not testbed.active_jobs(job_name), "scale(0) to empty the queue")


@pytest.mark.needs_docker("killing a compute node")
def test_compute_node_lost_workers_come_back_and_work_completes(make_cluster, client_for, testbed, job_name):
    # A compute node dies while its worker holds tasks and results. The
    # computation completes on the other node, the lost tasks recomputed; once
    # the node is back the cluster has two workers again, whether the batch
    # system requeued the job (Slurm) or it ended and jqref replaced it.
    cluster = make_cluster(cores=testbed.cpus_per_node, memory="1GiB", processes=1)  # a whole node each
    client = client_for(cluster)
    cluster.scale(jobs=2)
    client.wait_for_workers(2, timeout=PATIENCE)
    futures = client.map(slow_square_fn(), range(60), pure=False)
    wait_for(lambda: sum(f.done() for f in futures) >= 8, "some results to be held")
    node = next(iter(client.run(socket.gethostname).values()))  # a worker's node: compute1 or compute2
    testbed.kill_node(node)
    try:
        assert sum(client.gather(futures)) == sum(x * x for x in range(60))
    finally:
        testbed.start_node(node)  # the suite goes on on this testbed
    wait_for(lambda: worker_count(client) == 2, "two workers again")


def test_cancel_lets_the_worker_close_and_its_tasks_go_to_the_others(make_cluster, client_for, testbed, job_name):
    # Cancelling a running job without retiring its worker first (as close()
    # would) sends it a signal it handles before any hard kill, on every batch
    # system: the worker process itself closes and tells the scheduler why,
    # rather than dying with its nanny, and the work completes on the others.
    cluster = make_cluster()
    client = client_for(cluster)
    cluster.scale(jobs=2)
    client.wait_for_workers(2, timeout=PATIENCE)

    def nannies_starting(dask_scheduler):
        return len(dask_scheduler._starting_nannies)

    # Until the scheduler has the nanny's "started", a SIGTERM that reaches
    # the worker process makes the nanny fail to start rather than close.
    wait_for(lambda: not client.run_on_scheduler(nannies_starting), "the nannies to finish starting")
    futures = client.map(slow_square_fn(), range(40), pure=False)
    wait_for(lambda: sum(f.done() for f in futures) >= 4, "the work to be under way")
    job = next(iter(cluster.batch.active.values()))
    (address,) = [a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == job.name]
    cluster.sync(cluster.batch.cancel, job)
    assert sum(client.gather(futures)) == sum(x * x for x in range(40))
    wait_for(
        lambda: job.job_id not in testbed.active_jobs(job_name), "the cancelled job to leave the queue", timeout=120
    )
    closing = [event for _, event in client.get_events(address) if event.get("action") == "closing-worker"]
    assert [event["reason"] for event in closing] == ["signal-15"], client.get_events(address)
    log = testbed.job_log(LOGS, job_name, job.job_id)
    assert "Received signal SIGTERM" in log and "Nanny asking worker to close. Reason: signal-15" in log, log


#: A job script that runs its payload as a child and waits for it, as most job
#: scripts do (dask-jobqueue's among them), instead of exec'ing it: the child
#: writes its host, pid and the time to BEAT (on the shared home) every second.
#: It stops by itself once BEAT.stop exists, or after ten minutes, so that a
#: child that outlives its job does not beat on the testbed for ever.
BEATING_JOB = """#!/bin/bash
beat=BEAT
for _ in $(seq 600); do
    [ -e "$beat.stop" ] && break
    echo "$(hostname) $BASHPID $(date +%s.%N)" >"$beat"
    sleep 1
done &
wait
"""

#: How long a beat must stay the same for its writer to count as gone (it beats every second).
QUIET = 10


@pytest.mark.placement_independent
def test_cancel_ends_the_processes_the_job_script_started(testbed, job_name):
    # The batch system's own cancel command ends all of a running job, as an
    # execute node that tracks a job's processes does: not the job's shell
    # alone, leaving its child (a worker) running outside any job.
    import shlex
    import time

    script, beat = f"{LOGS}/{job_name}.sh", f"{LOGS}/{job_name}.beat"
    testbed.write_file(script, BEATING_JOB.replace("BEAT", shlex.quote(beat)))

    def read() -> str:
        return testbed.run("sh", "-c", f"cat {shlex.quote(beat)} 2>/dev/null || true").strip()

    job_id = testbed.submit_script(script, job_name)
    try:
        first = wait_for(read, f"job {job_id}'s child to beat")
        wait_for(lambda: read() not in ("", first), f"job {job_id}'s child to beat again", timeout=60)
        testbed.cancel(job_id)
        wait_for(
            lambda: not testbed.active_jobs(job_name), f"the cancelled job {job_id} to leave the queue", timeout=120
        )
        last = {"beat": read(), "since": time.monotonic()}

        def quiet() -> bool:
            now = read()
            if now != last["beat"]:
                last.update(beat=now, since=time.monotonic())
            return time.monotonic() - last["since"] >= QUIET

        deadline = time.monotonic() + 120
        while not quiet():
            if time.monotonic() > deadline:
                pytest.fail(
                    f"job {job_id} was cancelled and left the queue, but the child its script started "
                    f"still runs: its beat (host, pid, time) still advances after 120 s: {last['beat']}"
                )
            time.sleep(0.5)
    finally:
        testbed.run("touch", f"{beat}.stop")  # a child that outlived its job stops now
        if testbed.active_jobs(job_name):
            testbed.cancel(job_id)
