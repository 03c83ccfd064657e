"""PBS: directives, job ids, qstat -f states, name and value rules."""

import asyncio
import re
import shlex

import pytest

from jqref import BatchQueue, CommandError, CommandResult, JobState
from jqref.pbs import PBSJob, parse_qstat_full

from test_batch_queue import ScriptedRunner

# As OpenPBS prints it: four-space attributes, long values wrapped onto
# tab-indented lines, one blank line after each job.
QSTAT_OPENPBS = """\
Job Id: 11.login
    Job_Name = running
    Job_Owner = dask@login
    job_state = R
    queue = workq
    Resource_List.mem = 1024mb
    Resource_List.ncpus = 2
    Resource_List.select = 1:ncpus=2:mem=1024mb
    Resource_List.walltime = 00:07:00
    Variable_List = PBS_O_HOME=/home/dask,PBS_O_LANG=C.UTF-8,PBS_O_LOGNAME=dask,
\tPBS_O_PATH=/opt/jqref/bin:/usr/local/bin:/usr/bin:/bin,PBS_O_SHELL=/bin/b
\tash,PBS_O_WORKDIR=/home/dask
    Hold_Types = n

Job Id: 12.login
    Job_Name = queued
    job_state = Q
    Hold_Types = n

Job Id: 13.login
    job_state = H
    Hold_Types = u

Job Id: 14.login
    job_state = H
    Hold_Types = s

Job Id: 15.login
    job_state = E

Job Id: 16.login
    job_state = F

"""

# As the Slurm-backed wrapper (Debian's slurm-wlm-torque) prints it.
QSTAT_COMPAT = """\
Job Id:\t21
\tJob_Name = jq-x+.-_
\tJob_Owner = dask@login
\tjob_state = Q
\tqueue = workq
\tResource_List.walltime = 00:07:00
\tResource_List.ncpus = 2

Job Id:\t22
\tjob_state = C
\tqueue = workq

"""


def result(stdout="", stderr="", rc=0, argv=("qstat", "-f")):
    return CommandResult(argv, rc, stdout, stderr)


def job(**kwargs):
    kwargs.setdefault("cores", 2)
    kwargs.setdefault("memory", "1GiB")
    return PBSJob("tcp://10.0.0.1:8786", "w-0", **kwargs)


def directives(j):
    return [shlex.split(line[len("#PBS ") :]) for line in j.job_script().splitlines() if line.startswith("#PBS ")]


def test_directives_for_every_option():
    j = job(queue="workq", account="proj", walltime="00:07:00", log_directory="/logs", job_name="jn")
    assert directives(j) == [
        ["-N", j.tag],
        ["-q", "workq"],
        ["-A", "proj"],
        ["-l", "select=1:ncpus=2:mem=1024MB"],
        ["-l", "walltime=00:07:00"],
        ["-e", "/logs/"],
        ["-o", "/logs/"],
    ]


def test_memory_rounded_up_in_the_largest_binary_unit_it_holds_ten_of_as_dask_jobqueue_writes_it():
    assert ["-l", "select=1:ncpus=2:mem=954MB"] in directives(job(memory="1GB"))
    assert ["-l", "select=1:ncpus=2:mem=2048MB"] in directives(job(memory="2 GiB"))
    assert ["-l", "select=1:ncpus=2:mem=27GB"] in directives(job(memory="28GB"))


def test_torque_resource_form_and_resource_spec():
    assert directives(job(resource_type="nodes"))[1:3] == [["-l", "nodes=1:ppn=2"], ["-l", "mem=1024MB"]]
    args = directives(job(resource_spec="select=1:ncpus=8:mem=4gb:host=n1"))
    assert ["-l", "select=1:ncpus=8:mem=4gb:host=n1"] in args
    assert not any("ncpus=2" in " ".join(a) or "ppn" in " ".join(a) for a in args)
    with pytest.raises(ValueError, match="resource_type"):
        job(resource_type="chunks")


def test_submit_passes_the_destination_and_reads_a_script_file():
    assert PBSJob.submit_reads_stdin is False
    assert job(queue="workq").submit_argv() == ["qsub", "-q", "workq"]
    assert job(submit_command_extra=["-P", "x"]).submit_argv() == ["qsub", "-P", "x"]


def test_values_are_quoted_so_both_directive_parsers_read_them_back():
    j = job(account="it's $(x) `y` #z", log_directory="/home/a b")
    args = directives(j)
    assert ["-A", "it's $(x) `y` #z"] in args and ["-o", "/home/a b/"] in args


@pytest.mark.parametrize("name", ["two words", "a'b", "$(x)", "a/b", "a:b", "a;b", "x" * 222])
def test_names_pbs_refuses_are_refused_here_with_a_reason(name):
    with pytest.raises(ValueError, match="PBS job names"):
        job(job_name=name)


def test_names_pbs_accepts():
    (flag, name), *_ = directives(job(job_name="jq-a_b.c+d-1"))
    assert flag == "-N" and re.fullmatch(r"jq-a_b\.c\+d-1-[0-9a-f]{8}", name)
    assert len(directives(job(job_name="x" * 221))[0][1]) == 230


def test_each_job_is_queued_under_a_name_of_its_own_that_finds_it_again():
    # The name is the only field qstat -f shows in both flavours: the tag.
    first, second = job(job_name="dask-worker"), job(job_name="dask-worker")
    assert first.tag != second.tag and first.tag.startswith("dask-worker-")
    assert first.find_command() == ["qstat", "-f"]
    listing = QSTAT_COMPAT.replace("jq-x+.-_", second.tag)
    assert PBSJob.parse_found(CommandResult(("qstat",), 0, listing, ""), second.tag) == "21"
    assert PBSJob.parse_found(CommandResult(("qstat",), 0, listing, ""), first.tag) is None
    # The Slurm-backed qstat with no jobs at all: exit 153, nothing said.
    assert PBSJob.parse_found(CommandResult(("qstat",), 153, "", ""), first.tag) is None
    with pytest.raises(CommandError):
        PBSJob.parse_found(CommandResult(("qstat",), 1, "", "qstat: cannot connect to server"), first.tag)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"queue": "q; rm -rf /"}, "destination"),
        ({"walltime": "01:00:00,mem=100gb"}, "walltime"),
        ({"log_directory": "host:/logs"}, "host:path"),
        ({"account": "a\\b"}, "backslash"),
        ({"account": "a\nb"}, "line break"),
    ],
)
def test_values_that_cannot_be_carried_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        job(**options)


@pytest.mark.parametrize(
    "stdout, job_id",
    [
        ("123.login\n", "123.login"),
        ("42\n", "42"),
        ("7.pbs-head.example.org\n", "7.pbs-head.example.org"),
    ],
)
def test_job_id_keeps_the_server_suffix(stdout, job_id):
    assert PBSJob.parse_job_id(stdout) == job_id


def test_job_id_missing_is_an_error():
    with pytest.raises(ValueError, match="no job id"):
        PBSJob.parse_job_id("There was an error running the Slurm sbatch command.\n")


def test_status_is_one_batched_full_qstat():
    assert PBSJob.status_command(["1.login", "2.login"]) == ["qstat", "-f", "1.login", "2.login"]


def test_qstat_full_attributes_and_wrapped_values():
    jobs = parse_qstat_full(QSTAT_OPENPBS)
    assert list(jobs) == [f"{i}.login" for i in range(11, 17)]
    assert jobs["11.login"]["Resource_List.select"] == "1:ncpus=2:mem=1024mb"
    assert jobs["11.login"]["Variable_List"].endswith("PBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/home/dask")
    assert jobs["11.login"]["Hold_Types"] == "n"
    compat = parse_qstat_full(QSTAT_COMPAT)
    assert compat["21"]["Job_Name"] == "jq-x+.-_" and compat["21"]["Resource_List.ncpus"] == "2"


def test_states_from_qstat_full():
    ids = [f"{i}.login" for i in range(11, 18)]
    states = PBSJob.parse_states(result(QSTAT_OPENPBS), ids)
    assert {k: v[0] for k, v in states.items()} == {
        "11.login": JobState.RUNNING,
        "12.login": JobState.PENDING,
        "13.login": JobState.PENDING,
        "14.login": JobState.HELD,
        "15.login": JobState.RUNNING,
        "16.login": JobState.ENDED,
    }
    assert states["14.login"] == (JobState.HELD, "H (Hold_Types=s)")


def test_a_job_held_by_the_system_is_deleted_and_tracked_until_it_leaves_the_queue():
    """A system hold never lifts by itself: qdel the job, replace it at once,
    and keep polling it until qstat no longer knows it."""
    unknown = (35, "", "qstat: Unknown Job Id 14.login\n")
    listed = (0, QSTAT_OPENPBS, "")
    runner = ScriptedRunner(listed, (0, "", ""), listed, unknown, listed, unknown, unknown)
    replaced = []
    batch = BatchQueue(PBSJob, runner, on_ended=lambda j, detail: replaced.append((j.job_id, detail)))
    held = job(batch=batch)
    batch.adopt(held, "14.login")

    async def polls():
        await batch.poll()
        assert ["qdel", "14.login"] in runner.calls, "the held job was not deleted"
        assert batch.cancelled == {"14.login": held} and batch.active == {}
        assert replaced == [("14.login", "H (Hold_Types=s)")]
        await batch.poll()  # still listed while the server deletes it
        await batch.poll()  # unknown once, asked again at once: still listed
        assert batch.cancelled == {"14.login": held}, "dropped before the queue showed it gone"
        await batch.poll()

    asyncio.run(polls())
    assert batch.cancelled == {} and len(replaced) == 1
    assert runner.calls == [["qstat", "-f", "14.login"], ["qdel", "14.login"], *[["qstat", "-f", "14.login"]] * 5]


def test_ids_match_with_or_without_the_server_suffix():
    states = PBSJob.parse_states(result(QSTAT_OPENPBS), ["11", "12.login"])
    assert set(states) == {"11", "12.login"}
    compat = PBSJob.parse_states(result(QSTAT_COMPAT), ["21", "22.login"])
    assert compat == {"21": (JobState.PENDING, "Q"), "22.login": (JobState.ENDED, "C")}


def test_unknown_ids_are_gone_and_the_known_ones_still_read():
    stderr = (
        "qstat: Unknown Job Id 99.login\n"
        "qstat: 98.login Job has finished, use -x or -H to obtain historical job information\n"
    )
    states = PBSJob.parse_states(result(QSTAT_OPENPBS, stderr, rc=35), ["11.login", "98.login", "99.login"])
    assert set(states) == {"11.login"}
    # The Slurm-backed qstat says nothing and exits 153 when it knows none of them.
    assert PBSJob.parse_states(result("", "", rc=153), ["5"]) == {}


@pytest.mark.parametrize(
    "stderr, rc",
    [
        ("Connection refused\nqstat: cannot connect to server login (errno=111)\n", 2),
        ("Problem loading jobs.\n", 255),
        ("", 1),
        ("qstat: Unknown Job Id 9.login\nqstat: cannot connect to server login\n", 153),
    ],
)
def test_a_failed_poll_is_an_error_not_a_job_outcome(stderr, rc):
    with pytest.raises(CommandError):
        PBSJob.parse_states(result("", stderr, rc), ["9.login"])


def test_a_job_without_a_state_is_an_unreadable_poll():
    with pytest.raises(CommandError, match="without a job_state"):
        PBSJob.parse_states(result("Job Id: 1.login\n    Job_Name = x\n"), ["1.login"])


@pytest.mark.parametrize(
    "stdout, stderr, gone",
    [
        ("", "qdel: Unknown Job Id 9.login\n", True),
        ("", "qdel: Job has finished 9.login\n", True),
        ("", "", True),  # the Slurm-backed qdel, for a job that already ended
        ("qdel: Kill job error on job id 9: Access/permission denied\n", "", False),
        ("", "qdel: Unauthorized Request  9.login\n", False),
    ],
)
def test_qdel_of_a_job_that_is_gone_counts_as_cancelled(stdout, stderr, gone):
    assert PBSJob.already_gone(CommandResult(("qdel", "9.login"), 1, stdout, stderr)) is gone
