"""The job tracking logic of BatchQueue, driven by scripted command results.

The runner here replays canned scheduler output: it tests only the state
machine (which job counts as ended, what a failed poll changes); talking to
real schedulers is the integration suite's job.
"""

import asyncio

import pytest

from jqref import BatchQueue, CommandResult, JobCancelError, JobState
from jqref.runners import CommandError
from jqref.slurm import SLURMJob


class ScriptedRunner:
    """Replays `results` (returncode, stdout, stderr) in order; records each
    command's argv in `calls` and what it was given on stdin in `stdins`."""

    def __init__(self, *results):
        self.results = list(results)
        self.calls = []
        self.stdins = []

    async def run(self, argv, *, stdin=None, timeout=None):
        self.calls.append(list(argv))
        self.stdins.append(stdin)
        rc, out, err = self.results.pop(0)
        return CommandResult(tuple(argv), rc, out, err)

    async def close(self):
        pass


def run(coro):
    return asyncio.run(coro)


def job(batch, name="w-0"):
    return SLURMJob("tcp://a:1", name, batch=batch, cores=1, memory="1GiB")


def test_submit_passes_the_script_on_stdin_and_records_the_id():
    runner = ScriptedRunner((0, "17\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    j = job(batch)
    assert run(batch.submit(j)) == "17"
    assert batch.active == {"17": j}
    assert runner.calls == [["sbatch", "--parsable"]]
    assert runner.stdins == [j.job_script()]


def test_failed_submit_raises_with_stderr():
    runner = ScriptedRunner((1, "", "sbatch: error: invalid partition specified: nope\n"))
    batch = BatchQueue(SLURMJob, runner)
    with pytest.raises(Exception, match="invalid partition specified: nope"):
        run(batch.submit(job(batch)))
    assert batch.active == {}


def test_poll_reports_ended_and_vanished_jobs_once():
    ended = []
    no_file = (1, "", "tail: cannot open 'slurm-2.out' for reading: No such file or directory\n")
    runner = ScriptedRunner(
        (0, "1\n", ""),
        (0, "2\n", ""),
        (0, "3\n", ""),
        (0, "1 RUNNING\n2 CANCELLED\n", ""),
        (0, "", ""),
        no_file,  # the stderr tails of the two that ended
        no_file,
    )
    batch = BatchQueue(SLURMJob, runner, on_ended=lambda j, detail: ended.append((j.job_id, detail)))
    jobs = [job(batch, f"w-{i}") for i in range(3)]

    async def scenario():
        for j in jobs:
            j.job_id = await batch.submit(j)
        await batch.poll()

    run(scenario())
    assert sorted(ended) == [("2", "CANCELLED"), ("3", "left the queue")]
    assert list(batch.active) == ["1"] and jobs[0].state is JobState.RUNNING
    # One command for all, then one again for the job the answer missed, before it counts as gone.
    assert runner.calls[-4:-2] == [SLURMJob.status_command(["1", "2", "3"]), SLURMJob.status_command(["3"])]
    assert runner.calls[-2:] == [["tail", "-n", "20", "--", "slurm-2.out"], ["tail", "-n", "20", "--", "slurm-3.out"]]
    assert jobs[1].error_tail == ""  # unreadable: nothing to show


def test_failed_poll_changes_nothing():
    ended = []
    runner = ScriptedRunner((0, "1\n", ""), (1, "", "Unable to contact slurm controller"))
    batch = BatchQueue(SLURMJob, runner, on_ended=lambda j, d: ended.append(j))
    j = job(batch)

    async def scenario():
        j.job_id = await batch.submit(j)
        with pytest.raises(CommandError, match="Unable to contact slurm controller"):
            await batch.poll()

    run(scenario())
    assert ended == [] and list(batch.active) == ["1"]


def test_cancel_all_confirms_through_the_queue():
    runner = ScriptedRunner(
        (0, "1\n", ""), (0, "1 PENDING\n", ""), (0, "", ""), (0, "1 COMPLETING\n", ""), (0, "1 CANCELLED\n", "")
    )
    batch = BatchQueue(SLURMJob, runner)
    j = job(batch)

    async def scenario():
        j.job_id = await batch.submit(j)
        await batch.cancel_all(timeout=10, interval=0.01)

    run(scenario())
    assert batch.active == {} and batch.cancelled == {}
    assert runner.calls[2] == ["scancel", "1"]


def test_cancel_failure_is_reported():
    runner = ScriptedRunner((0, "1\n", ""), (0, "1 PENDING\n", ""), (1, "", "scancel: error: Access/permission denied"))
    batch = BatchQueue(SLURMJob, runner)
    j = job(batch)

    async def scenario():
        j.job_id = await batch.submit(j)
        await batch.cancel_all(timeout=1, interval=0.01)

    with pytest.raises(JobCancelError, match="permission denied"):
        run(scenario())


class DroppingRunner(ScriptedRunner):
    """Replays results; a result of None stands for a connection lost mid-command."""

    async def run(self, argv, *, stdin=None, timeout=None):
        from jqref import ConnectionLost

        self.calls.append(list(argv))
        step = self.results.pop(0)
        if step is None or isinstance(step, int):  # an int: the remote pid the command had started as
            raise ConnectionLost(argv, "dropped", remote_pid=step)
        rc, out, err = step
        return CommandResult(tuple(argv), rc, out, err)


def test_interrupted_submission_that_reached_the_queue_is_adopted_not_repeated():
    j = None

    def results():
        # sbatch dropped; squeue by name shows the job with this job's tag.
        return [None, (0, f"41 {j.tag}\n", "")]

    runner = DroppingRunner()
    batch = BatchQueue(SLURMJob, runner)
    j = job(batch)
    runner.results = results()
    assert run(batch.submit(j)) == "41"
    assert [c[0] for c in runner.calls] == ["sbatch", "squeue"]
    assert batch.submitted == 1


def test_the_lookup_waits_for_a_submit_command_that_outlived_its_connection():
    # sbatch had started as pid 77 when the connection dropped: it may still
    # commit the job, so the queue is asked only once it has exited.
    runner = DroppingRunner()
    batch = BatchQueue(SLURMJob, runner)
    j = job(batch)
    runner.results = [
        77,
        (0, "  PID TTY TIME CMD\n   77 ?  00:00:00 sbatch\n", ""),
        (1, "", ""),
        (0, f"42 {j.tag}\n", ""),
    ]
    assert run(batch.submit(j)) == "42"
    assert runner.calls[1:3] == [["ps", "-p", "77"], ["ps", "-p", "77"]] and runner.calls[3][0] == "squeue"
    assert batch.submitted == 1


def test_interrupted_submission_that_never_arrived_is_submitted_again():
    runner = DroppingRunner(None, (0, "40 jqref-someone-else\n", ""), (0, "42\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    assert run(batch.submit(job(batch))) == "42"
    assert [c[0] for c in runner.calls] == ["sbatch", "squeue", "sbatch"]


def test_chunks_keep_order_and_fit_a_command_line():
    from jqref.batch import chunks

    ids = [str(i) for i in range(1, 1201)]
    assert chunks(ids) == [ids[:500], ids[500:1000], ids[1000:]]
    long_ids = [f"{i}.pbs-server.example.org" for i in range(700)]
    runs = chunks(long_ids, max_characters=1000)
    assert [job_id for run in runs for job_id in run] == long_ids
    assert all(len(" ".join(run)) < 1000 for run in runs) and len(runs) > 1
    assert chunks([]) == []


def submitted_jobs(batch, runner, n):
    jobs = [job(batch, f"w-{i}") for i in range(n)]
    runner.results[:0] = [(0, f"{i + 1}\n", "") for i in range(n)]

    async def submit_all():
        for j in jobs:
            j.job_id = await batch.submit(j)

    run(submit_all())
    return jobs


def test_jobs_closed_together_are_cancelled_with_one_command():
    runner = ScriptedRunner((0, "1 PENDING\n2 PENDING\n3 PENDING\n", ""), (0, "", ""))
    batch = BatchQueue(SLURMJob, runner)
    jobs = submitted_jobs(batch, runner, 3)

    async def close_together():
        await asyncio.gather(*(j.close() for j in jobs))

    run(close_together())
    assert runner.calls[4:] == [["scancel", "1", "2", "3"]]
    assert set(batch.cancelled) == {"1", "2", "3"} and batch.cancel_commands == 1


def test_a_failed_cancel_of_several_jobs_is_retried_one_by_one_to_know_which_failed():
    runner = ScriptedRunner(
        (0, "1 PENDING\n2 PENDING\n", ""),
        (1, "", "scancel: error: Kill job error on job id 2"),
        (0, "", ""),
        (1, "", "scancel: error: Access/permission denied"),
    )
    batch = BatchQueue(SLURMJob, runner)
    jobs = submitted_jobs(batch, runner, 2)

    async def close_together():
        await asyncio.gather(*(batch.cancel(j) for j in jobs))

    run(close_together())
    assert runner.calls[3:] == [["scancel", "1", "2"], ["scancel", "1"], ["scancel", "2"]]
    assert list(batch.cancelled) == ["1"] and list(batch.active) == ["2"]
    assert "permission denied" in batch.cancel_errors["2"]


def test_a_poll_of_many_jobs_is_chunked_only_when_its_command_line_would_be_too_long():
    batch = BatchQueue(SLURMJob, ScriptedRunner())
    few = [str(i) for i in range(100)]
    many = [str(10**6 + i) for i in range(3000)]
    assert batch._status_chunks(few) == [few]
    assert len(batch._status_chunks(many)) == 6
    from jqref.sge import SGEJob

    assert BatchQueue(SGEJob, ScriptedRunner())._status_chunks(many) == [many]  # qstat -xml names no ids


def running_jobs(batch, runner, count, grace="0.05s"):
    jobs = submitted_jobs(batch, runner, count)
    for j in jobs:
        j.state = JobState.RUNNING
        j.cancel_grace_period = float(grace.rstrip("s"))
    return jobs


def test_running_jobs_are_signalled_first_and_not_cancelled_when_they_leave_within_the_grace_period():
    runner = ScriptedRunner((0, "", ""), (0, "1 COMPLETED\n2 COMPLETED\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    jobs = running_jobs(batch, runner, 2, grace="30s")
    run(batch.cancel_all(timeout=10, interval=0.01))
    assert runner.calls[2:] == [
        ["scancel", "--batch", "--signal=TERM", "1", "2"],
        ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T %r", "--jobs=1,2"],
    ]
    assert batch.cancelled == {} and [j.state for j in jobs] == [JobState.ENDED] * 2


def test_a_signalled_job_still_there_after_the_grace_period_is_cancelled():
    runner = ScriptedRunner((0, "", ""), *[(0, "1 RUNNING\n", "")] * 3, (0, "", ""), (0, "1 CANCELLED\n", ""))
    batch = BatchQueue(SLURMJob, runner)
    running_jobs(batch, runner, 1, grace="0.05s")

    async def scenario():
        await batch.cancel_all(timeout=10, interval=0.03)

    run(scenario())
    assert runner.calls[1] == ["scancel", "--batch", "--signal=TERM", "1"]
    assert ["scancel", "1"] in runner.calls and batch.cancelled == {}


def test_pending_jobs_are_cancelled_at_once_and_running_ones_signalled():
    runner = ScriptedRunner((0, "1 RUNNING\n2 PENDING\n", ""), (0, "", ""), (0, "", ""))
    batch = BatchQueue(SLURMJob, runner)
    first, second = running_jobs(batch, runner, 2, grace="30s")
    second.state = JobState.PENDING

    async def close_together():
        await asyncio.gather(first.close(), second.close())
        batch._hard_cancels.pop().cancel()

    run(close_together())
    assert runner.calls[3:] == [["scancel", "--batch", "--signal=TERM", "1"], ["scancel", "2"]]
    assert set(batch.cancelled) == {"1", "2"}


def test_a_job_that_started_since_the_last_poll_is_signalled_not_killed():
    runner = ScriptedRunner((0, "1\n", ""), (0, "1 RUNNING\n", ""), (0, "", ""))
    batch = BatchQueue(SLURMJob, runner)
    j = job(batch)  # pending, as far as the last poll knew

    async def scenario():
        j.job_id = await batch.submit(j)
        await batch.cancel(j)
        batch._hard_cancels.pop().cancel()

    run(scenario())
    assert runner.calls[1:] == [
        ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T %r", "--jobs=1"],
        ["scancel", "--batch", "--signal=TERM", "1"],
    ]


def test_without_a_signal_command_on_the_site_jobs_are_cancelled_at_once_from_then_on():
    from jqref.pbs import PBSJob

    runner = ScriptedRunner((127, "", "sh: 1: qsig: not found"), (0, "", ""), (0, "", ""))
    batch = BatchQueue(PBSJob, runner)
    jobs = [PBSJob("tcp://a:1", f"w-{i}", batch=batch, cores=1, memory="1GiB") for i in range(2)]
    for job_id, j in zip(("1", "2"), jobs):
        j.job_id, j.state = job_id, JobState.RUNNING
        batch.active[job_id] = j

    async def one_after_the_other():
        for j in jobs:
            await j.close()

    run(one_after_the_other())
    assert runner.calls == [["qsig", "-s", "TERM", "1"], ["qdel", "1"], ["qdel", "2"]]
    assert set(batch.cancelled) == {"1", "2"}


def sge_listing(state):
    return (
        0,
        "<?xml version='1.0'?><job_info><queue_info><job_list state='running'><JB_job_number>9</JB_job_number>"
        f"<state>{state}</state></job_list></queue_info></job_info>",
        "",
    )


def test_a_job_in_transfer_is_cancelled_once_running_where_only_running_jobs_are_warned():
    from jqref.sge import SGEJob

    # Grid Engine's qdel kills a job still in transfer without -notify's warning.
    runner = ScriptedRunner(sge_listing("t"), sge_listing("t"), sge_listing("r"), (0, "", ""))
    batch = BatchQueue(SGEJob, runner)
    j = SGEJob("tcp://a:1", "w-0", batch=batch, cores=1, memory="1GiB")
    j.job_id = "9"
    batch.active["9"] = j
    run(j.close())
    assert [call[0] for call in runner.calls] == ["qstat", "qstat", "qstat", "qdel"]
    assert batch.cancelled == {"9": j}


def test_jobs_submitted_together_are_recorded_with_one_write():
    class CountingRecord:
        def __init__(self):
            self.saves = []

        def save(self, jobs):
            self.saves.append(list(jobs))

    runner = ScriptedRunner(*[(0, f"{i}\n", "") for i in range(1, 6)])
    record = CountingRecord()
    batch = BatchQueue(SLURMJob, runner, record=record)

    async def submit_together():
        await asyncio.gather(*(batch.submit(job(batch, f"w-{i}")) for i in range(5)))
        await asyncio.sleep(0)

    run(submit_together())
    assert record.saves == [["1", "2", "3", "4", "5"]]
