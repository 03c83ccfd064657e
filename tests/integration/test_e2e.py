"""End to end against a real batch system: what the Dask scheduler and the
batch system observe, polled with deadlines."""

from __future__ import annotations

import re

import pytest

from jqref import JobState

from .conftest import (
    PATIENCE,
    node_containers,
    start_and_kill_client,
    wait_for,
    worker_count,
    worker_names,
)
from .intruder import CONNECT_AS_A_WORKER, CONNECT_WITHOUT_THE_CERTIFICATE, REFUSED

pytestmark = pytest.mark.integration


def test_scale_up_computes_on_two_nodes_then_down(make_cluster, client_for, testbed, job_name):
    cluster = make_cluster(cores=2, memory="1GiB", processes=1)
    client = client_for(cluster)
    cluster.scale(jobs=2)
    wait_for(lambda: worker_count(client) == 2, "2 workers")
    hosts = {w["host"] for w in client.scheduler_info()["workers"].values()}
    assert len(hosts) == 2, f"both workers on one node: {hosts}"
    assert client.submit(lambda x: x + 1, 41).result(timeout=PATIENCE) == 42
    assert sum(client.gather(client.map(lambda x: x * x, range(100)))) == 328350
    assert len(testbed.active_jobs(job_name)) == 2

    cluster.scale(jobs=1)
    wait_for(lambda: len(testbed.active_jobs(job_name)) == 1, "one job left in the queue")
    wait_for(lambda: worker_count(client) == 1, "1 worker")

    cluster.scale(0)
    wait_for(lambda: not testbed.active_jobs(job_name), "no jobs in the queue")
    wait_for(lambda: worker_count(client) == 0, "no workers")


@pytest.mark.placement_independent
def test_scale_by_cores_and_memory(make_cluster, testbed, job_name):
    cluster = make_cluster(cores=1, memory="512MiB")
    cluster.scale(cores=3)
    wait_for(lambda: len(testbed.active_jobs(job_name)) == 3, "3 one-core jobs for cores=3")
    cluster.scale(memory="1GiB")
    wait_for(lambda: len(testbed.active_jobs(job_name)) == 2, "2 half-GiB jobs for memory=1GiB")


def test_two_processes_per_job_have_the_names_the_spec_expects(make_cluster, client_for):
    cluster = make_cluster(cores=2, memory="1GiB", processes=2)
    client = client_for(cluster)
    cluster.scale(jobs=1)
    wait_for(lambda: worker_count(client) == 2, "2 workers from one job")
    (job,) = cluster.worker_spec
    assert worker_names(client) == {f"{job}-0", f"{job}-1"} == cluster.plan
    cluster.scale(1)  # one worker still needs a whole job
    assert len(cluster.worker_spec) == 1


def test_adapt_follows_the_load_without_oscillating(make_cluster, client_for, testbed, job_name):
    cluster = make_cluster(cores=1, memory="512MiB")
    client = client_for(cluster)
    cluster.adapt(minimum_jobs=0, maximum_jobs=2, interval="1s", wait_count=3)
    assert worker_count(client) == 0

    def slow_square(x):
        import time

        time.sleep(0.5)
        return x * x

    futures = client.map(slow_square, range(40))
    wait_for(lambda: worker_count(client) >= 1, "adapt to start workers for pending work")
    assert sum(client.gather(futures)) == sum(x * x for x in range(40))
    del futures  # results held in worker memory would keep the workers alive
    wait_for(
        lambda: not testbed.active_jobs(job_name) and worker_count(client) == 0,
        "adapt to retire idle jobs down to the minimum",
    )
    submitted = cluster.batch.submitted
    assert 1 <= submitted <= 3, f"adapt submitted {submitted} jobs for a maximum of 2: it oscillates"


@pytest.mark.placement_independent
def test_death_timeout_ends_jobs_of_a_killed_client(testbed, job_name, cluster_options, mode):
    job_ids, _ = start_and_kill_client(testbed.name, mode, {**cluster_options, "death_timeout": 15}, jobs=2, workers=2)
    assert len(job_ids) == 2
    # death_timeout is 15 s; the rest of the deadline is margin for a busy machine.
    wait_for(lambda: not testbed.active_jobs(job_name), "the killed client's jobs to end", timeout=15 + 90)


def commands_run(cluster) -> list[list[str]]:
    """Every command the cluster's queue runs from now on, as it reaches the runner."""
    seen = []
    run = cluster.batch.runner.run

    async def recording(argv, **kwargs):
        seen.append(list(argv))
        return await run(argv, **kwargs)

    cluster.batch.runner.run = recording
    return seen


@pytest.mark.placement_independent
def test_jobs_started_together_are_one_array_whose_elements_live_and_leave_on_their_own(
    make_cluster, client_for, testbed, job_name
):
    cluster = make_cluster()
    client = client_for(cluster)
    job_cls = cluster.job_cls
    commands = commands_run(cluster)
    # As many jobs as one array may have on the SLURM testbed (MaxArraySize=10), more than run at once anywhere.
    jobs_wanted, running_at_once = 10, testbed.one_core_jobs_at_once
    assert running_at_once < jobs_wanted, f"the testbed runs {running_at_once} jobs at once: none would stay pending"
    cluster.scale(jobs=jobs_wanted)
    wait_for(lambda: len(testbed.active_jobs(job_name)) == jobs_wanted, f"{jobs_wanted} jobs in the queue")
    queued = testbed.active_jobs(job_name)
    submits = [c for c in commands if c[0] == job_cls.submit_command[0]]
    assert len(submits) == (1 if job_cls.array_index_variable else jobs_wanted), submits  # PBS: no arrays (pbs.py)
    jobs = list(cluster.batch.active.values())
    assert set(cluster.batch.active) == queued and {job.name for job in jobs} == set(cluster.worker_spec)

    # Each running element has the workers of its own spec entry.
    wait_for(
        lambda: worker_count(client) == running_at_once, f"the {running_at_once} jobs that fit, with their workers"
    )
    if job_cls.array_index_variable:
        index_of = {job.name: job_cls.array_first_index + i for i, job in enumerate(jobs)}
        variable = job_cls.array_index_variable
        reported = client.run(lambda: __import__("os").environ[variable])
        names = client.scheduler_info(n_workers=-1)["workers"]
        assert {names[a]["name"]: int(index) for a, index in reported.items()} == {
            names[a]["name"]: index_of[names[a]["name"]] for a in reported
        }

    # One element cancelled from outside is replaced by exactly one job.
    running = next(job for job in jobs if job.state is JobState.RUNNING)
    testbed.cancel(running.job_id)
    wait_for(
        lambda: len(ids := testbed.active_jobs(job_name)) == jobs_wanted and running.job_id not in ids,
        "one replacement for the cancelled element",
    )
    assert len(cluster.worker_spec) == jobs_wanted and len(cluster.batch.active) == jobs_wanted

    del commands[:]
    cluster.close()
    assert testbed.active_jobs(job_name) == set()
    signal = list(job_cls.signal_command or ())
    cancels = [
        c
        for c in commands
        if c[: len(job_cls.cancel_command)] == list(job_cls.cancel_command)
        and not (signal and c[: len(signal)] == signal)
    ]
    assert len(cancels) == 1, cancels  # one command for all the ids, which fit one


@pytest.mark.placement_independent
def test_directives_take_effect_and_hostile_names_arrive_intact(make_cluster, client_for, testbed, job_name):
    name = job_name + testbed.hostile_name_suffix
    cluster = make_cluster(cores=2, memory="1GiB", processes=1, walltime="00:07:00", job_name=name, name=name)
    client = client_for(cluster)
    cluster.scale(jobs=1)
    (job_id,) = wait_for(lambda: testbed.active_jobs(name), "the job in the queue")
    granted = testbed.resources(job_id)
    assert granted == {"name": name, "cores": 2, "memory_mib": 1024, "queue": testbed.queue, "walltime_s": 420}
    # The worker command carried the name (the cluster's, as in dask-jobqueue) through the script unchanged.
    wait_for(lambda: worker_names(client) == cluster.plan == {f"{name}-0"}, "the worker, named as in the spec")


@pytest.mark.placement_independent
def test_dask_jobqueue_style_values_expand_in_the_job(make_cluster, client_for, testbed, job_name):
    """`$VAR` in local_directory expands in the job's shell; worker_extra_args items are words."""
    variable = testbed.job_variable
    prefix = "/tmp/jqref-" if testbed.job_variable_is_id else ""  # else the variable is a directory
    cluster = make_cluster(local_directory=f"{prefix}${{{variable}}}/w", worker_extra_args=["--resources GPU=2"])
    client = client_for(cluster)
    cluster.scale(jobs=1)
    wait_for(lambda: worker_count(client) == 1, "1 worker")
    (job_id,) = testbed.active_jobs(job_name)

    def directory_and_variable(dask_worker, name=variable):
        import os

        return dask_worker.local_directory, os.environ.get(name, "")

    ((directory, value),) = client.run(directory_and_variable).values()
    assert value, f"the job has no ${variable}"
    assert directory.startswith(f"{prefix}{value}/w/"), f"{directory} is not under {prefix}{value}/w"
    if testbed.job_variable_is_id:
        assert value.split(".")[0] == job_id.split(".")[0], f"${variable}={value} in job {job_id}"
    (worker,) = client.scheduler_info()["workers"].values()
    assert worker["resources"] == {"GPU": 2}
    assert client.submit(lambda: "used", resources={"GPU": 2}).result(timeout=PATIENCE) == "used"


@pytest.mark.placement_independent
def test_bad_input_is_refused_and_leaves_nothing(make_cluster, testbed, job_name):
    with pytest.raises(ValueError, match="not a size"):
        make_cluster(memory="plenty")
    with pytest.raises(Exception, match=testbed.unknown_queue_error) as error:
        make_cluster(queue="no-such-queue", n_workers=1)
    assert "no-such-queue" in str(error.value)
    assert testbed.active_jobs(job_name) == set()


@pytest.mark.needs_docker("acting as another user of the login node")
def test_another_user_gets_nothing_and_the_workers_key_cannot_act_as_a_client(make_cluster, cluster_options, runner):
    cluster = make_cluster()
    script = cluster.job_script()
    ca, cert, key = (
        re.search(rf"{flag}\s+'*([^\s';\"]+)", script)[1] for flag in ("--tls-ca-file", "--tls-cert", "--tls-key")
    )
    assert runner.run_blocking(["test", "-r", key]).ok, "the workers' key is not where the job script says"
    as_a_worker = runner.run_blocking(
        [cluster_options["python"], "-c", CONNECT_AS_A_WORKER, cluster.scheduler.address, ca, cert, key], timeout=120
    )
    assert as_a_worker.stdout.strip() == "client with a worker's credentials refused", as_a_worker
    nodes = node_containers()
    status, out, _ = nodes.exec("login", "cat", key, user="nobody", check=False)
    assert status != 0 and "PRIVATE KEY" not in out, "another user read the workers' key"
    _, out, err = nodes.exec(
        "login",
        cluster_options["python"],
        "-c",
        CONNECT_WITHOUT_THE_CERTIFICATE,
        cluster.scheduler.address,
        user="nobody",
        check=False,
    )
    assert out.splitlines() == REFUSED, out + err
    cluster.close()
    assert not runner.run_blocking(["test", "-e", key]).ok, "close() left the workers' key behind"
