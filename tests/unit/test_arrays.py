"""Array submission: jobs started together become one submission, each
element still a job of its own.

The array scripts run under the real shell with each element's index set as
its batch system would, and the worker command is read back with
dask-worker's own parser (the compat suite's site); the queue logic is
driven by scripted command results.
"""

from __future__ import annotations

import asyncio

import pytest

from jqref import BatchQueue, CommandResult
from jqref.config import Options
from jqref.htcondor import HTCondorJob
from jqref.pbs import PBSJob
from jqref.sge import SGEJob
from jqref.slurm import SLURMJob

from test_batch_queue import DroppingRunner, ScriptedRunner
from test_dask_jobqueue_compat import SCHEDULER, Site, condor_arguments, parsed

ARRAY_JOBS = {"slurm": SLURMJob, "sge": SGEJob, "htcondor": HTCondorJob}


def cluster_jobs(job_cls, count, batch=None, names=None, **options):
    """Jobs as a cluster makes them: one resolved set of options shared by all."""
    shared = Options(
        job_cls.config_name,
        None,
        {"cores": 1, "memory": "1GiB", **options},
        renamed=job_cls.renamed_options,
        aliases=job_cls.option_aliases,
        owner=job_cls.__name__,
    )
    names = names or [f"w-{i}" for i in range(count)]
    return [job_cls(SCHEDULER, name, batch=batch, shared_options=shared) for name in names]


def submit_together(batch, jobs):
    async def start_all():
        return await asyncio.gather(*(batch.submit(job) for job in jobs), return_exceptions=True)

    return asyncio.run(start_all())


# ---- the queue: one submission for the jobs of one moment -------------------


def test_jobs_started_together_are_one_array_with_an_id_per_element():
    runner = ScriptedRunner((0, "17\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    jobs = cluster_jobs(SLURMJob, 3, batch)
    assert submit_together(batch, jobs) == ["17_0", "17_1", "17_2"]
    assert runner.calls == [["sbatch", "--parsable"]] and batch.submit_commands == 1
    assert batch.active == dict(zip(["17_0", "17_1", "17_2"], jobs)) and batch.submitted == 3


def test_arrays_can_be_turned_off():
    runner = ScriptedRunner((0, "1\n", ""), (0, "2\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    assert submit_together(batch, cluster_jobs(SLURMJob, 2, batch, arrays=False)) == ["1", "2"]
    assert batch.submit_commands == 2


def test_arrays_are_split_at_the_size_limit_and_a_lone_job_is_a_plain_job():
    runner = ScriptedRunner((0, "10\n", ""), (0, "20\n", ""), (0, "30\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    ids = submit_together(batch, cluster_jobs(SLURMJob, 5, batch, max_array_size=2))
    assert ids == ["10_0", "10_1", "20_0", "20_1", "30"]
    assert "--array" not in str(runner.calls) and batch.submit_commands == 3


@pytest.mark.parametrize("size", [0, -1, 2.5, "10"])
def test_a_max_array_size_that_is_not_a_positive_whole_number_is_refused(size):
    with pytest.raises(ValueError, match="max_array_size must be a whole number"):
        cluster_jobs(SLURMJob, 1, max_array_size=size)


def test_jobs_of_different_clusters_are_not_mixed_in_one_array():
    runner = ScriptedRunner((0, "1\n", ""), (0, "2\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    jobs = [*cluster_jobs(SLURMJob, 2, batch), *cluster_jobs(SLURMJob, 2, batch, names=["v-0", "v-1"])]
    assert submit_together(batch, jobs) == ["1_0", "1_1", "2_0", "2_1"]


def test_a_failed_array_submission_fails_every_job_of_it():
    batch = BatchQueue(SLURMJob, ScriptedRunner((1, "", "sbatch: error: Batch job submission failed: limit\n")))
    outcomes = submit_together(batch, cluster_jobs(SLURMJob, 3, batch))
    assert all("submission failed: limit" in str(outcome) for outcome in outcomes) and batch.active == {}


def test_an_interrupted_array_submission_that_reached_the_queue_is_adopted_whole():
    runner = DroppingRunner()
    batch = BatchQueue(SLURMJob, runner)
    jobs = cluster_jobs(SLURMJob, 3, batch)
    # sbatch dropped; squeue by name shows the array (%F, its own id) with the tag of the array's script.
    runner.results = [None, (0, f"41 {jobs[0].tag}\n41 {jobs[0].tag}\n", "")]
    assert submit_together(batch, jobs) == ["41_0", "41_1", "41_2"]
    assert [call[0] for call in runner.calls] == ["sbatch", "squeue"]


@pytest.mark.parametrize(
    "job_cls, stdout, ids",
    [
        (SLURMJob, "17\n", ["17_0", "17_1"]),
        (SGEJob, "17.1-2:1\n", ["17.1", "17.2"]),
        (HTCondorJob, "15.0 - 15.1\n", ["15.0", "15.1"]),
    ],
)
def test_element_ids_as_each_batch_system_names_them(job_cls, stdout, ids):
    batch = BatchQueue(job_cls, ScriptedRunner((0, stdout, "")))
    assert submit_together(batch, cluster_jobs(job_cls, 2, batch)) == ids


def test_pbs_submits_one_job_each():
    # The Slurm-backed qsub of the compat flavour turns -J into a Slurm array
    # whose elements its qstat cannot name; OpenPBS arrays are not tested here.
    batch = BatchQueue(PBSJob, ScriptedRunner())
    jobs = cluster_jobs(PBSJob, 3, batch)
    assert batch._submissions(jobs) == [[job] for job in jobs]


# ---- element states ----------------------------------------------------------


def result(stdout, argv=("status",)):
    return CommandResult(argv, 0, stdout, "")


def test_slurm_lists_every_element_and_reads_their_states():
    assert "--array" in SLURMJob.status_command(["17_0", "17_1"])
    states = SLURMJob.parse_states(result("17_1 PENDING\n17_0 RUNNING\n"), ["17_0", "17_1"])
    assert {job_id: state.value for job_id, (state, _) in states.items()} == {"17_0": "running", "17_1": "pending"}


def test_sge_lists_every_element_and_reads_their_states():
    assert SGEJob.status_command(["17.1"])[-2:] == ["-g", "d"]
    xml = """<?xml version='1.0'?><job_info><queue_info>
      <job_list state="running"><JB_job_number>17</JB_job_number><state>r</state><tasks>1</tasks></job_list>
      </queue_info><job_info>
      <job_list state="pending"><JB_job_number>17</JB_job_number><state>qw</state><tasks>2</tasks></job_list>
      <job_list state="pending"><JB_job_number>18</JB_job_number><state>qw</state></job_list>
      </job_info></job_info>"""
    states = SGEJob.parse_states(result(xml), ["17.1", "17.2", "18"])
    assert {job_id: word for job_id, (_, word) in states.items()} == {"17.1": "r", "17.2": "qw", "18": "qw"}


def test_slurm_takes_an_already_done_signal_as_delivered():
    # scancel --signal exits 229 without a word when the job ended on the
    # signal before its retry (seen with arrays that have pending elements).
    runner = ScriptedRunner((0, "5\n", ""), (0, "5 RUNNING\n", ""), (229, "", ""), (0, "", ""))
    batch = BatchQueue(SLURMJob, runner)
    (job,) = cluster_jobs(SLURMJob, 1, batch, cancel_grace_period="30s")
    (job.job_id,) = submit_together(batch, [job])

    async def scenario():
        await batch.poll()
        await batch.cancel(job)

    asyncio.run(scenario())
    assert runner.calls[2][:3] == ["scancel", "--batch", "--signal=TERM"] and len(runner.calls) == 3
    assert "5" in batch.cancelled and batch.cancel_commands == 0


# ---- the array's script, run by the real shell ---------------------------------


@pytest.fixture(params=sorted(ARRAY_JOBS))
def scheduler(request):
    return request.param


def element_run(site, script_job, index):
    """Run the array's script as its element `index`."""
    site.env[script_job.array_index_variable] = str(index)
    return site.run(script_job)


def test_each_element_runs_the_worker_of_its_job(scheduler, tmp_path):
    site = Site(tmp_path, scheduler)
    job_cls = ARRAY_JOBS[scheduler]
    names = ["cluster-7", "cluster-2", "w $(touch pwned) `id`;x"]
    jobs = cluster_jobs(job_cls, 3, names=names, python=str(site.bin / "python"))
    script_job = jobs[0].array_of(jobs)
    for offset, name in enumerate(names):
        done, calls = element_run(site, script_job, job_cls.array_first_index + offset)
        assert done.returncode == 0, done.stderr
        assert parsed(calls)["name"] == name
    assert not list(tmp_path.rglob("pwned"))


def test_an_element_without_a_name_stops_with_a_message(scheduler, tmp_path):
    site = Site(tmp_path, scheduler)
    jobs = cluster_jobs(ARRAY_JOBS[scheduler], 2, python=str(site.bin / "python"))
    done, calls = element_run(site, jobs[0].array_of(jobs), 99)
    assert done.returncode == 3 and calls == []
    assert "no worker name for array element 99" in done.stderr


@pytest.mark.parametrize("job_cls, directive", [(SLURMJob, "#SBATCH --array 0-2"), (SGEJob, "#$ -t 1-3")])
def test_the_array_directive_spans_the_elements(job_cls, directive):
    jobs = cluster_jobs(job_cls, 3)
    script = jobs[0].array_of(jobs).job_script()
    assert directive in script.splitlines() and directive not in jobs[0].job_script()


def test_htcondor_queues_the_description_once_per_element_with_its_index():
    jobs = cluster_jobs(HTCondorJob, 3, environment={"A": "$x y"})
    script_job = jobs[0].array_of(jobs)
    assert script_job.job_script().splitlines()[-1] == "queue 3"
    environment = condor_arguments(script_job.submit_description()["environment"])
    assert environment == ["A=$x y", "JQREF_ARRAY_INDEX=$(ProcId)"]  # the user's value stays literal
    assert jobs[0].job_script().splitlines()[-1] == "queue"
