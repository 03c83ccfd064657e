"""Reading sbatch and squeue output."""

import pytest

from jqref import CommandError, CommandResult, JobState
from jqref.slurm import SLURMJob


def result(stdout="", stderr="", rc=0):
    return CommandResult(("squeue",), rc, stdout, stderr)


@pytest.mark.parametrize("stdout, job_id", [("42\n", "42"), ("1234;cluster\n", "1234")])
def test_job_id(stdout, job_id):
    assert SLURMJob.parse_job_id(stdout) == job_id


def test_job_id_missing_is_an_error():
    with pytest.raises(ValueError, match="no job id"):
        SLURMJob.parse_job_id("sbatch: warning: something\n")


def test_status_command_is_one_batched_call():
    argv = SLURMJob.status_command(["1", "2", "3"])
    assert argv[0] == "squeue" and "--jobs=1,2,3" in argv


def test_states():
    out = "1 PENDING\n2 RUNNING\n3 COMPLETING\n4 CANCELLED\n5 FAILED\n6 NODE_FAIL\n7 CONFIGURING\n"
    states = SLURMJob.parse_states(result(out), [str(i) for i in range(1, 9)])
    assert {k: v[0] for k, v in states.items()} == {
        "1": JobState.PENDING,
        "2": JobState.RUNNING,
        "3": JobState.RUNNING,
        "4": JobState.ENDED,
        "5": JobState.ENDED,
        "6": JobState.ENDED,
        "7": JobState.PENDING,
    }
    assert states["4"] == (JobState.ENDED, "CANCELLED")


def test_all_ids_unknown_means_none_in_queue():
    r = result(stderr="slurm_load_jobs error: Invalid job id specified\n", rc=1)
    assert SLURMJob.parse_states(r, ["9"]) == {}


def test_a_failed_poll_is_an_error_not_a_job_outcome():
    r = result(stderr="slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n", rc=1)
    with pytest.raises(CommandError, match="Unable to contact"):
        SLURMJob.parse_states(r, ["9"])
