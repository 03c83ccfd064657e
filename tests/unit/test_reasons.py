"""Why a job waits or ended: each batch system's words for it, parsed from
output its commands printed on the testbeds, and what the cluster does with
them (logs once, a jobs table, no resubmission loop after OUT_OF_MEMORY,
preempted jobs replaced), driven through the stand-in SLURM commands."""

from __future__ import annotations

import time

import pytest
from test_arrays import cluster_jobs
from test_fault_corpus import cluster_on_stand_in, stand_in, until  # noqa: F401  (fixtures)

from jqref import BatchQueue, CommandResult, JobState
from jqref.diagnosis import WorkersDidNotArrive, age, end_cause, jobs_html, jobs_text
from jqref.htcondor import HTCondorJob
from jqref.job import walltime_seconds
from jqref.pbs import PBSJob
from jqref.slurm import SLURMJob

import stand_in_slurm
from test_batch_queue import ScriptedRunner, run

# squeue --noheader --array --states=all --format="%i %T %r", printed by
# slurm-wlm 24.11.5 on the SLURM testbed: a job too big for a free node, two
# queued behind it, one with --begin in an hour, one --hold, two running.
SQUEUE_PENDING = """\
5 PENDING Resources
7 PENDING Priority
8 PENDING Priority
6 PENDING BeginTime
2 PENDING JobHeldUser
3 RUNNING None
4 RUNNING None
9_2 PENDING Resources
9_0 RUNNING None
"""
# The same jobs once over (MinJobAge keeps them listed): what they ended as, and why.
SQUEUE_ENDED = """\
5 CANCELLED Resources
7 COMPLETED None
8 FAILED NonZeroExitCode
"""
# scontrol show config, the lines around the array limit (slurm-wlm 24.11.5, SLURM testbed).
SCONTROL_CONFIG = """\
Configuration data as of 2026-12-07T00:06:12
MaxArraySize            = 1001
MaxDBDMsgs              = 20000
MaxJobCount             = 10000
"""


# The job's stderr file after that kill (sbatch --mem=100M, a Python asking 400 MiB).
OVER_MEMORY_STDERR = """\
slurmstepd-compute1: error: StepId=3.batch exceeded memory limit (429625344 > 104857600), being killed
slurmstepd-compute1: error: *** JOB 3 ON compute1 CANCELLED AT 2026-12-07T00:25:17 ***
slurmstepd-compute1: error: Exceeded job memory limit
"""


def squeue(stdout: str, rc: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(("squeue",), rc, stdout, stderr)


def test_slurm_reasons_come_from_the_same_squeue_answer_as_the_states():
    ids = ["5", "7", "6", "2", "3", "9_2", "9_0"]
    states = SLURMJob.parse_states(squeue(SQUEUE_PENDING), ids)
    reasons = SLURMJob.parse_reasons(squeue(SQUEUE_PENDING), ids)
    assert states["5"] == (JobState.PENDING, "PENDING") and states["3"] == (JobState.RUNNING, "RUNNING")
    assert {job_id: reasons[job_id] for job_id in ids} == {
        "5": "Resources",
        "7": "Priority",
        "6": "BeginTime",
        "2": "JobHeldUser",
        "3": "",  # squeue's "None": nothing to say
        "9_2": "Resources",
        "9_0": "",
    }
    assert SLURMJob.status_command(["5"])[4] == "--format=%i %T %r"


def test_slurm_end_states_and_their_reasons():
    states = SLURMJob.parse_states(squeue(SQUEUE_ENDED), ["5", "7", "8"])
    assert {job_id: state for job_id, state in states.items()} == {
        "5": (JobState.ENDED, "CANCELLED"),
        "7": (JobState.ENDED, "COMPLETED"),
        "8": (JobState.ENDED, "FAILED"),
    }
    assert SLURMJob.parse_reasons(squeue(SQUEUE_ENDED), ["8"])["8"] == "NonZeroExitCode"
    assert SLURMJob.parse_reasons(squeue("", 1, "slurm_load_jobs error: Invalid job id specified"), ["8"]) == {}


def test_slurm_site_limits():
    job = SLURMJob("tcp://a:1", "w-0", cores=1, memory="1GiB", job_extra_directives=["--qos=limited"])
    commands = job.site_limit_commands()
    assert commands[0] == ["scontrol", "show", "config"]
    assert commands[1][-2:] == ["name=limited", "format=MaxSubmitPU"]
    assert job.parse_site_limits(CommandResult(tuple(commands[0]), 0, SCONTROL_CONFIG, "")) == {"max_array_size": 1001}
    assert job.parse_site_limits(CommandResult(tuple(commands[1]), 0, "2\n", "")) == {"max_jobs": 2}
    assert job.parse_site_limits(CommandResult(tuple(commands[1]), 0, "\n", "")) == {}  # no limit set
    no_accounting = "You are not running a supported accounting_storage plugin\n"
    assert job.parse_site_limits(CommandResult(tuple(commands[1]), 1, "", no_accounting)) == {}
    plain = SLURMJob("tcp://a:1", "w-0", cores=1, memory="1GiB")
    assert plain.site_limit_commands() == [["scontrol", "show", "config"]]  # no QOS named: its limit is not asked


def test_the_site_array_limit_splits_arrays_when_the_user_sets_none():
    batch = BatchQueue(SLURMJob, ScriptedRunner())
    batch.site_limits = {"max_array_size": 2}
    assert [len(group) for group in batch._submissions(cluster_jobs(SLURMJob, 5, batch))] == [2, 2, 1]
    own = cluster_jobs(SLURMJob, 5, batch, max_array_size=4)
    assert [len(group) for group in batch._submissions(own)] == [4, 1]
    batch.site_limits = {}  # a site that says nothing
    assert [len(group) for group in batch._submissions(cluster_jobs(SLURMJob, 5, batch))] == [5]


def test_htcondor_says_why_a_job_is_held_or_idle():
    # condor_q -af:t ClusterId ProcId JobStatus HoldReason LastRejMatchReason, HTCondor 23.9.6 on the
    # HTCondor testbed: requirements = False, hold = True, allowed_job_duration = 2 (then a running one).
    out = (
        "2\t0\t1\tundefined\tno match found \n"
        "3\t0\t5\tsubmitted on hold at user's request\tundefined\n"
        "4\t0\t5\tThe job exceeded allowed job duration of 00:02\tundefined\n"
        "5\t0\t2\tundefined\tundefined\n"
    )
    result = CommandResult(tuple(HTCondorJob.status_command(["2.0"])), 0, out, "")
    assert HTCondorJob.parse_states(result, [])["4.0"][0] is JobState.HELD
    assert HTCondorJob.parse_reasons(result, []) == {
        "2.0": "no match found",
        "3.0": "submitted on hold at user's request",
        "4.0": "The job exceeded allowed job duration of 00:02",
        "5.0": "",
    }


def test_pbs_gives_the_schedulers_comment_on_a_job_it_does_not_run():
    # Written after OpenPBS's qstat -f layout and its scheduler's comment wording, not captured:
    # this change ran no PBS testbed.
    out = (
        "Job Id: 31.login\n    job_state = Q\n"
        "    comment = Not Running: Insufficient amount of resource: ncpus (R: 8 A: 2 T: 4)\n\n"
        "Job Id: 32.login\n    job_state = R\n    comment = Job run at Mon Dec 07 at 00:10 on (compute1:ncpus=2)\n\n"
    )
    reasons = PBSJob.parse_reasons(CommandResult(("qstat", "-f"), 0, out, ""), ["31.login", "32"])
    assert reasons == {"31.login": "Not Running: Insufficient amount of resource: ncpus (R: 8 A: 2 T: 4)", "32": ""}


# qstat -j 2,3 (Grid Engine 8.1.9 on the SGE testbed, schedd_job_info true): a held job and a held array.
QSTAT_J = """\
==============================================================
job_number:                 2
exec_file:                  job_scripts/2
submission_time:            Mon Dec  7 00:47:01 2026
owner:                      dask
job_name:                   j.sh
script_file:                /tmp/j.sh
binding:                    NONE
job_type:                   NONE
scheduling info:            Job is in hold state
==============================================================
job_number:                 3
exec_file:                  job_scripts/3
submission_time:            Mon Dec  7 00:47:11 2026
job_name:                   j.sh
job-array tasks:            1-2:1
binding:                    NONE
job_type:                   NONE
scheduling info:            Job is in hold state
"""
# qstat -xml -g d for them, there and then: pending, held (hqw); element 3.2's entry, like 3.1's, left out.
QSTAT_XML_HELD = """\
<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>2</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>j.sh</JB_name>
      <JB_owner>dask</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-12-07T00:47:01</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>j.sh</JB_name>
      <JB_owner>dask</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-12-07T00:47:11</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>1</tasks>
    </job_list>
  </job_info>
</job_info>
"""


def test_sge_is_asked_why_only_for_jobs_that_stay_pending_and_not_on_every_poll():
    from jqref.sge import SGEJob

    assert SGEJob.pending_reason_command(["3.1", "3.2", "2"]) == ["qstat", "-j", "2,3"]
    assert SGEJob.parse_pending_reasons(CommandResult(("qstat",), 0, QSTAT_J, ""), ["2", "3.1", "9"]) == {
        "2": "Job is in hold state",
        "3.1": "Job is in hold state",
    }
    reported = []
    runner = ScriptedRunner(*[(0, QSTAT_XML_HELD, "")] * 2, (0, QSTAT_J, ""), (0, QSTAT_XML_HELD, ""))
    batch = BatchQueue(SGEJob, runner, report=reported.append)
    job = SGEJob("tcp://a:1", "w-0", batch=batch, cores=1, memory="1GiB")
    batch.adopt(job, "2")
    job.state, job.submitted_at = JobState.PENDING, time.time()
    run(batch.poll())  # just submitted: not asked
    job.submitted_at -= 60
    run(batch.poll())  # pending for a minute: asked
    run(batch.poll())  # asked a moment ago: not again
    assert [call[:2] for call in runner.calls] == [
        ["qstat", "-xml"],
        ["qstat", "-xml"],
        ["qstat", "-j"],
        ["qstat", "-xml"],
    ]
    assert reported == ["job 2 (w-0) is pending: Job is in hold state"]
    assert job.reason == "Job is in hold state", "kept through polls whose status command gives no reasons"


def test_a_reason_is_reported_once_each_time_it_changes():
    reported = []
    runner = ScriptedRunner(
        (0, "1\n", ""),
        (0, "1 PENDING Priority\n", ""),
        (0, "1 PENDING Priority\n", ""),
        (0, "1 PENDING Resources\n", ""),
        (0, "1 RUNNING None\n", ""),
    )
    batch = BatchQueue(SLURMJob, runner, report=reported.append)
    job = SLURMJob("tcp://a:1", "w-0", batch=batch, cores=1, memory="1GiB")

    async def scenario():
        job.job_id = await batch.submit(job)
        for _ in range(4):
            await batch.poll()

    run(scenario())
    assert reported == ["job 1 (w-0) is pending: Priority", "job 1 (w-0) is pending: Resources"]
    assert job.reason == "" and batch.jobs_table()[0][:3] == ("1", "running", "")


def test_the_jobs_table():
    rows = [("12", "pending", "QOSMaxSubmitJobPerUserLimit", 75.0), ("11_0", "OUT_OF_MEMORY", "OutOfMemory", 3700.0)]
    assert jobs_text(rows).splitlines() == [
        "job   state          age     reason",
        "12    pending        1m 15s  QOSMaxSubmitJobPerUserLimit",
        "11_0  OUT_OF_MEMORY  1h 1m   OutOfMemory",
    ]
    assert "<td style='text-align: left'>QOSMaxSubmitJobPerUserLimit</td>" in jobs_html(rows)
    assert jobs_html([("1", "pending", "<b>", None)]).count("&lt;b&gt;") == 1
    assert age(None) == "?" and age(5) == "5s"
    error = WorkersDidNotArrive(0, 1, 30, "The jobs:\n" + jobs_text(rows))
    assert isinstance(error, TimeoutError) and str(error).startswith("Only 0/1 workers arrived after 30\nThe jobs:")


def test_an_out_of_memory_end_names_the_option_and_the_stderr_tail():
    job = SLURMJob("tcp://a:1", "w-0", cores=1, memory="1GiB", log_directory="/logs")
    job.job_id, job.ended_as, job.reason = "7", "OUT_OF_MEMORY", "OutOfMemory"
    job.error_tail = "slurmstepd: error: Detected 1 oom_kill event in StepId=7.batch"
    cause = end_cause(job)
    assert cause.startswith("OUT_OF_MEMORY (OutOfMemory): the batch system ended it for its memory='1GiB'")
    assert "raise memory=" in cause and cause.endswith("/logs/dask-worker-7.err:\n" + job.error_tail)
    job.job_id = "7_1"
    assert job.error_file() is None  # named by the element's own job id, which jqref does not know
    assert SLURMJob("tcp://a:1", "w-0", cores=1, memory="1GiB").error_file() is None  # not submitted
    plain = SLURMJob("tcp://a:1", "w-0", cores=1, memory="1GiB")
    plain.job_id = "7_1"
    assert plain.error_file() == "slurm-7_1.out"  # Slurm's default, in sbatch's directory


def test_a_memory_kill_slurm_reports_as_failed_is_told_by_its_stderr():
    # Slurm 24.11.5 on the SLURM testbed (jobacct_gather/linux, OverMemoryKill, no cgroups):
    # squeue said "FAILED RaisedSignal:9(Killed)", and slurmstepd wrote this to the job's stderr.
    job = SLURMJob("tcp://a:1", "w-0", cores=1, memory="256MiB")
    job.job_id, job.ended_as, job.reason = "2", "FAILED", "RaisedSignal:9(Killed)"
    assert job.option_at_fault() is None
    job.error_tail = OVER_MEMORY_STDERR
    assert job.option_at_fault() == "memory"
    assert "memory='256MiB'; raise memory=" in end_cause(job)


@pytest.mark.parametrize(
    ("walltime", "number_seconds", "seconds"),
    [
        ("00:30:00", 1, 1800),
        ("30", 60, 1800),
        ("30", 1, 30),
        ("1-02", 60, 93600),
        ("2:30", 1, 150),
        ("1:00.5", 1, 60.5),
    ],
)
def test_walltimes_in_seconds(walltime, number_seconds, seconds):
    assert walltime_seconds(walltime, number_seconds) == seconds


def test_workers_retire_before_the_walltime_unless_told_otherwise():
    def lifetime(**options):
        return SLURMJob("tcp://a:1", "w-0", cores=1, memory="1GiB", **options).lifetime_args()

    assert lifetime(walltime="01:00:00") == ["--lifetime", "3300s", "--lifetime-stagger", "150s"]
    assert lifetime(walltime="2") == ["--lifetime", "96s", "--lifetime-stagger", "12s"]  # a fifth of 2 minutes at most
    assert lifetime(walltime="01:00:00", lifetime_margin="10 minutes")[1] == "3000s"
    assert lifetime(walltime="01:00:00", lifetime_margin=0) == []
    assert HTCondorJob("tcp://a:1", "w-0", cores=1, memory="1GiB").lifetime_args() == []  # no walltime by default
    assert lifetime(walltime="01:00:00", worker_extra_args=["--lifetime 20m"]) == []
    assert lifetime(walltime="01:00:00", worker_extra_args=["--lifetime=20m"]) == []


def end_every_queued_job(state: str) -> list[str]:
    """Mark every job the stand-in still queues as over with `state`, as squeue would show it."""
    with stand_in_slurm.queue() as queue:  # under the stand-in's lock: its commands write it too
        ended = [job_id for job_id, job in queue["jobs"].items() if job["state"] not in ("CANCELLED", state)]
        for job_id in ended:
            queue["jobs"][job_id].update(state=state, reason="OutOfMemory" if state == "OUT_OF_MEMORY" else "None")
    return ended


def submissions() -> int:
    with stand_in_slurm.queue() as queue:
        return len(queue["jobs"])


def test_jobs_ended_for_their_memory_are_not_resubmitted_in_a_loop(stand_in, cluster_on_stand_in):  # noqa: F811
    cluster = cluster_on_stand_in()
    cluster.scale(jobs=1)
    for count in range(1, cluster.max_failed_starts + 1):
        until(lambda count=count: submissions() == count and end_every_queued_job("OUT_OF_MEMORY"), "a job")
    until(lambda: cluster._gave_up, "the cluster giving up")
    assert "OUT_OF_MEMORY (OutOfMemory)" in cluster._gave_up and "raise memory=" in cluster._gave_up
    assert submissions() == cluster.max_failed_starts  # and no more
    logs = cluster.get_logs(scheduler=False, workers=False)["Cluster"]
    assert logs.count("OUT_OF_MEMORY") == cluster.max_failed_starts
    with pytest.raises(WorkersDidNotArrive, match="OUT_OF_MEMORY") as raised:
        cluster.wait_for_workers(1, timeout=0.5)
    assert "3 failed starts in a row" in str(raised.value)


def test_preempted_jobs_are_replaced_without_counting_as_failed_starts(stand_in, cluster_on_stand_in):  # noqa: F811
    cluster = cluster_on_stand_in()
    cluster.scale(jobs=1)
    for count in range(1, cluster.max_failed_starts + 3):
        until(lambda count=count: submissions() == count and end_every_queued_job("PREEMPTED"), "a job")
    until(lambda: submissions() == cluster.max_failed_starts + 3, "the last replacement")
    assert cluster._failed_starts == 0 and not cluster._gave_up


def test_a_pending_reason_reaches_the_logs_the_repr_and_the_timeout_error(stand_in, cluster_on_stand_in):  # noqa: F811
    cluster = cluster_on_stand_in()
    cluster.scale(jobs=1)
    until(lambda: cluster.batch.active and next(iter(cluster.batch.active.values())).reason, "a reason")
    (job_id,) = cluster.batch.active
    logs = cluster.get_logs(scheduler=False, workers=False)["Cluster"]
    assert logs.count(f"job {job_id} (SLURMCluster-0) is pending: Priority") == 1
    assert "<td style='text-align: left'>Priority</td>" in cluster._repr_html_()
    with pytest.raises(WorkersDidNotArrive, match=rf"(?s)Only 0/1 workers arrived.*{job_id} +pending .* Priority"):
        cluster.wait_for_workers(1, timeout=0.5)
