"""Why a job waits or ended, as the real batch system says it, reaching the
user: the cluster's log, its HTML repr, the error when workers do not
arrive; the site's limits becoming defaults; workers that retire before
their walltime."""

from __future__ import annotations

import re

import pytest
from distributed import Client

from jqref.diagnosis import WorkersDidNotArrive

from .conftest import PATIENCE, wait_for, worker_count

# Reasons are read from the batch system's answers wherever the scheduler runs: the SSH mode covers them.
pytestmark = [pytest.mark.integration, pytest.mark.placement_independent]

#: Per batch system: options that keep a job waiting for an hour, and the reason its status command then gives.
NEVER_STARTING = {
    "slurm": ({"job_extra_directives": ["--begin=now+1hour"]}, "BeginTime"),
    "htcondor": ({"job_extra_directives": {"requirements": "False"}}, "no match found"),
    # Asked with qstat -j once a job has been pending for 30 s.
    "sge": ({"job_extra_directives": ["-h"]}, "Job is in hold state"),
}


def cluster_log(cluster) -> str:
    return cluster.get_logs(scheduler=False, workers=False)["Cluster"]


def slurm_config(testbed) -> dict[str, str]:
    return dict(re.findall(r"^(\w+)\s*=\s*(.*)$", testbed.run("scontrol", "show", "config"), re.MULTILINE))


# Not PBS: the compat flavour's qstat -f (Slurm's wrapper) prints no comment; OpenPBS's does.
@pytest.mark.schedulers(*NEVER_STARTING)
def test_a_job_that_cannot_start_says_why_in_the_log_the_repr_and_the_timeout(make_cluster, testbed):
    options, reason = NEVER_STARTING[testbed.name]
    cluster = make_cluster(**options)
    cluster.scale(jobs=1)
    wait_for(lambda: reason in cluster_log(cluster), f"the reason {reason} in get_logs()")
    (job_id,) = cluster.batch.active
    assert cluster_log(cluster).count(f"job {job_id} ") == 1, "logged once, not on every poll"
    assert f"<td style='text-align: left'>{reason}</td>" in cluster._repr_html_()
    with pytest.raises(WorkersDidNotArrive, match=rf"(?s)Only 0/1 workers arrived.*{job_id} +pending .*{reason}"):
        cluster.wait_for_workers(1, timeout=2)


@pytest.mark.schedulers("slurm")  # Slurm's end states and limits
def test_the_sites_array_limit_becomes_max_array_size(make_cluster, testbed, job_name):
    limit = int(slurm_config(testbed)["MaxArraySize"])
    cluster = make_cluster(cores=1, memory="256MiB")
    cluster.scale(jobs=1)
    wait_for(lambda: testbed.active_jobs(job_name), "the job in the queue")
    assert cluster.batch.site_limits["max_array_size"] == limit
    if limit > 10:
        pytest.skip(f"MaxArraySize={limit}: too large to exceed on this testbed (the split is unit-tested)")
    cluster.scale(jobs=limit + 2)  # the limit's worth, and one more, in one step
    wait_for(lambda: len(testbed.active_jobs(job_name)) == limit + 2, f"{limit + 2} jobs")
    arrays = {job_id.split("_")[0] for job_id in testbed.active_jobs(job_name)}
    assert len(arrays) == 3, arrays  # the first job, an array of the limit, an array of one


@pytest.mark.schedulers("slurm")  # Slurm's end states and limits
def test_a_worker_over_its_memory_is_reported_and_not_resubmitted_in_a_loop(make_cluster, testbed, job_name):
    config = slurm_config(testbed)
    if "cgroup" not in config.get("TaskPlugin", "") and "OverMemoryKill" not in config.get("JobAcctGatherParams", ""):
        pytest.skip("this Slurm testbed does not enforce memory (TaskPlugin without cgroup, no OverMemoryKill)")
    # The workers' own memory limit is off: the batch system is to end the job, not the nanny the worker.
    cluster = make_cluster(memory="256MiB", worker_extra_args=["--memory-limit", "0"])
    client = Client(cluster)
    try:
        cluster.scale(jobs=1)
        wait_for(lambda: worker_count(client) == 1, "a worker")
        # 1 GiB in a 256 MiB job; held, so that the scheduler gives it to each replacement in turn.
        hog = client.submit(lambda: bytearray(1 << 30), pure=False)
        wait_for(lambda: cluster._gave_up, "the cluster giving up", timeout=PATIENCE * 2)
        del hog
    finally:
        client.close()
    # Slurm with cgroups says OUT_OF_MEMORY; without (this testbed) FAILED, and slurmstepd's words in the stderr file.
    assert "OUT_OF_MEMORY" in cluster._gave_up or "Exceeded job memory limit" in cluster._gave_up
    assert "memory='256MiB'; raise memory=" in cluster._gave_up
    assert cluster.batch.submitted == cluster.max_failed_starts


@pytest.mark.schedulers("slurm")  # Slurm's end states and limits
def test_the_users_submit_limit_becomes_max_jobs_and_is_reported_once(make_cluster, testbed, job_name):
    if not testbed.runner.run_blocking(["sacctmgr", "-nP", "show", "qos", "name=limited"], timeout=60).stdout.strip():
        pytest.skip("this Slurm testbed has no accounting with a QOS 'limited' (slurmdbd)")
    cluster = make_cluster(job_extra_directives=["--qos=limited"])
    cluster.scale(jobs=1)
    wait_for(lambda: cluster.batch.site_limits is not None, "the site's limits read")
    limit = cluster.batch.site_limits["max_jobs"]
    cluster.scale(jobs=limit + 1)
    cluster.scale(jobs=limit + 2)
    wait_for(lambda: len(testbed.active_jobs(job_name)) == limit, f"{limit} jobs")
    assert cluster_log(cluster).count(f"the site allows you {limit}") == 1


@pytest.mark.schedulers("slurm")  # TIMEOUT: Slurm's name for a job its walltime ended
def test_with_a_walltime_workers_retire_before_it_by_default(make_cluster, client_for, testbed, job_name):
    # One minute: lifetime_margin is at most a fifth of the walltime, so the worker gets --lifetime
    # 48 s (+- 6 s) and its job ends on its own, before Slurm's limit. That a retiring worker's
    # tasks are not lost is test_faults.py's walltime test (an explicit --lifetime, every scheduler).
    cluster = make_cluster(cores=1, memory="256MiB", walltime="1")
    assert "--lifetime 48s --lifetime-stagger 6s" in cluster.job_script()
    client = client_for(cluster)
    cluster.scale(jobs=1)
    wait_for(lambda: worker_count(client) == 1, "a worker")
    wait_for(lambda: cluster.batch.ended, "the worker's job to end", timeout=120)
    ended = [job.ended_as for job in cluster.batch.ended]
    assert "TIMEOUT" not in ended and "COMPLETED" in ended, ended
