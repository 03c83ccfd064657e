"""Scale/adapt arithmetic and worker-group naming."""

import math

import dask.config
import pytest

from jqref import SLURMCluster
from jqref.cluster import adaptive_bounds, job_counts
from jqref.slurm import SLURMJob


def template(cores=4, memory="8GiB", processes=2):
    return SLURMJob(None, "t", cores=cores, memory=memory, processes=processes)


def test_job_counts():
    t = template()
    assert job_counts(t, n=3) == [1.5]
    assert job_counts(t, cores=8, memory="4GiB") == [2.0, 0.5]


@pytest.mark.parametrize(
    "kwargs, bounds",
    [
        ({"minimum_jobs": 1, "maximum_jobs": 3}, {"minimum": 2, "maximum": 6}),
        ({"minimum": 3, "maximum": 5}, {"minimum": 4, "maximum": 4}),  # whole jobs: up for min, down for max
        ({"minimum_cores": 5, "maximum_cores": 12}, {"minimum": 4, "maximum": 6}),
        ({"minimum_memory": "1GiB", "maximum_memory": "20GiB"}, {"minimum": 2, "maximum": 4}),
        ({"maximum": math.inf}, {"maximum": math.inf}),
        ({"maximum_jobs": 5, "maximum_cores": 8}, {"maximum": 4}),
        ({}, {}),
    ],
)
def test_adaptive_bounds(kwargs, bounds):
    assert adaptive_bounds(template(), **kwargs) == bounds


@pytest.fixture
def cluster_factory():
    made = []

    def make(**kwargs):
        made.append(SLURMCluster(scheduler_options={"dashboard_address": ":0"}, **kwargs))
        return made[-1]

    yield make
    for c in made:
        c.close()


@pytest.mark.parametrize("source", ["kwarg", "config", "default"])
def test_group_names_match_the_job_script_wherever_processes_came_from(cluster_factory, source):
    kwargs = {"cores": 4, "memory": "4GiB", "name": "grp"}
    settings = {}
    if source == "kwarg":
        kwargs["processes"] = 2
    elif source == "config":
        settings["jqref.slurm.processes"] = 2
    with dask.config.set(settings):
        cluster = cluster_factory(**kwargs)
        expected = 2 if source != "default" else 4  # distributed's rule: 4 cores, 4 workers
        assert cluster.new_spec["group"] == [f"-{i}" for i in range(expected)]
        assert f"--nworkers {expected}" in cluster.job_script()
        # Workers are named after the cluster, as in dask-jobqueue (each job's spec name; the preview's is a dummy).
        assert cluster._new_worker_name(0) == "grp-0" and "--name dummy-name" in cluster.job_script()


def test_jobs_keep_the_options_the_cluster_started_with_and_share_them(cluster_factory):
    with dask.config.set({"jqref.slurm.queue": "first"}):
        cluster = cluster_factory(cores=1, memory="1GiB")
    with dask.config.set({"jqref.slurm.queue": "later", "jqref.slurm.processes": 1}):
        assert "-p first" in cluster.job_script()
    assert cluster.new_spec["options"]["shared_options"] is cluster._template.options


def test_single_process_jobs_have_no_group(cluster_factory):
    cluster = cluster_factory(cores=1, memory="1GiB")
    assert "group" not in cluster.new_spec and "--nworkers" not in cluster.job_script()


def test_bad_options_fail_at_construction():
    with pytest.raises(ValueError, match="not a size"):
        SLURMCluster(cores=1, memory="one gig")
