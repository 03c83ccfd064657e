"""Batch commands that misbehave as real ones do, run by the real LocalRunner.

`stand_in_slurm.py` is installed as sbatch, squeue and scancel on PATH; each
test asks it for one misbehaviour and asserts on what is left in its queue
and on what the user is told: nothing left behind, nothing silent.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import time

import pytest

from jqref import BatchQueue, JobCancelError
from jqref.runners import CommandError, CommandTimeout, LocalRunner
from jqref.slurm import SLURMCluster, SLURMJob

import stand_in_slurm

#: Short enough for a fast test, long enough for a loaded machine to start python.
TIMEOUT = 3.0


class StandIn:
    """The stand-in batch system's queue and its fault requests."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        (directory / "faults").mkdir(parents=True)

    def fault(self, command: str, *faults: str) -> None:
        (self.directory / "faults" / command).write_text("".join(f"{fault}\n" for fault in faults))

    def jobs(self) -> dict[str, dict]:
        queue = self.directory / "queue.json"
        return json.loads(queue.read_text())["jobs"] if queue.exists() else {}

    def children_running(self) -> list[int]:
        """The stand-in's children still running (a zombie has ended)."""
        children = self.directory / "children"
        pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
        return [pid for pid in pids if _running(pid)]

    def queued(self) -> list[str]:
        """Ids of the jobs not cancelled nor over: what would be left behind."""
        over = {"CANCELLED", "OUT_OF_MEMORY", "PREEMPTED"}  # the ends tests give jobs
        return sorted(job_id for job_id, job in self.jobs().items() if job["state"] not in over)


def _running(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    stand_in_slurm.install(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STAND_IN_DIR", str(tmp_path / "stand-in"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return StandIn(tmp_path / "stand-in")


def batch_queue(**options) -> BatchQueue:
    return BatchQueue(SLURMJob, LocalRunner(timeout=TIMEOUT), **options)


def job(batch: BatchQueue, name: str = "w-0") -> SLURMJob:
    return SLURMJob("tcp://a:1", name, batch=batch, cores=1, memory="1GiB", job_name="fault")


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("fault", ["queue-then-hang", "queue-then-garbage", "hang-with-child"])
def test_a_submission_whose_outcome_is_unknown_is_found_by_its_tag_and_tracked(stand_in, fault):
    stand_in.fault("sbatch", fault)
    batch = batch_queue()

    async def scenario():
        started = time.monotonic()
        j = job(batch)
        job_id = j.job_id = await batch.submit(j)
        assert time.monotonic() - started < TIMEOUT + 20, "the timeout did not end the command"
        await until_async(lambda: not stand_in.children_running(), "the command's child to be ended")
        assert batch.active.keys() == {job_id} and stand_in.queued() == [job_id]
        await batch.cancel_all(timeout=20)

    run(scenario())
    assert stand_in.queued() == []


def test_a_submission_that_timed_out_before_queueing_raises_and_leaves_nothing(stand_in):
    stand_in.fault("sbatch", "hang")
    batch = batch_queue()
    with pytest.raises(CommandTimeout, match="timed out"):
        run(batch.submit(job(batch)))
    assert stand_in.jobs() == {} and batch.active == {} and batch.unconfirmed == []


def test_a_submission_that_cannot_be_looked_up_is_looked_up_again_at_close(stand_in):
    stand_in.fault("sbatch", "queue-then-garbage")
    stand_in.fault("squeue", "denied")  # the lookup by tag fails
    batch = batch_queue()

    async def scenario():
        with pytest.raises(CommandError, match="whether its job reached the queue is unknown"):
            await batch.submit(job(batch))
        assert len(stand_in.queued()) == 1 and batch.active == {}
        await batch.cancel_all(timeout=20)

    run(scenario())
    assert stand_in.queued() == [] and batch.unconfirmed == []


def test_a_submission_still_unknown_at_close_is_reported(stand_in):
    stand_in.fault("sbatch", "queue-then-garbage")
    stand_in.fault("squeue", "denied", "denied")  # at submission, and again at close
    batch = batch_queue()

    async def scenario():
        with pytest.raises(CommandError):
            await batch.submit(job(batch))
        with pytest.raises(JobCancelError, match="submission of w-0 may have reached the queue"):
            await batch.cancel_all(timeout=20)

    run(scenario())
    assert len(stand_in.queued()) == 1  # left, and the user was told


@pytest.mark.parametrize("fault", ["empty", "partial"])
def test_one_answer_that_misses_jobs_forgets_none_of_them(stand_in, fault):
    ended = []
    batch = batch_queue(on_ended=lambda job, detail: ended.append(job.job_id))
    jobs = [job(batch, f"w-{i}") for i in range(4)]

    async def scenario():
        for j in jobs:
            j.job_id = await batch.submit(j)
        stand_in.fault("squeue", fault)
        await batch.poll()
        assert ended == [] and len(batch.active) == 4
        await batch.poll()  # a true answer: they are all still there
        assert ended == [] and len(batch.active) == 4
        await batch.cancel_all(timeout=20)

    run(scenario())
    assert stand_in.queued() == []


def test_a_job_missing_from_an_answer_and_from_the_one_that_asks_again_has_left(stand_in):
    ended = []
    batch = batch_queue(on_ended=lambda job, detail: ended.append((job.job_id, detail)))
    j = job(batch)

    async def scenario():
        j.job_id = await batch.submit(j)
        (stand_in.directory / "queue.json").write_text(json.dumps({"next": 200, "jobs": {}}))  # purged
        await batch.poll()

    run(scenario())
    assert ended == [(j.job_id, "left the queue")]


def test_a_status_command_that_keeps_failing_ends_close_early_and_says_so(stand_in):
    batch = batch_queue()
    j = job(batch)

    async def scenario():
        j.job_id = await batch.submit(j)
        stand_in.fault("squeue", *["denied"] * 20)
        started = time.monotonic()
        with pytest.raises(JobCancelError) as raised:
            await batch.cancel_all(timeout=120)
        assert time.monotonic() - started < 60
        return str(raised.value)

    message = run(scenario())
    assert "not confirmed gone, the status command failed 5 times in a row" in message
    assert j.job_id in message and "permission denied" in message
    assert stand_in.queued() == []  # the cancel itself went through


def test_a_held_job_whose_cancel_fails_stays_tracked_until_it_goes(stand_in):
    ended = []
    batch = batch_queue(on_ended=lambda job, detail: ended.append(job.job_id))
    j = job(batch)

    async def scenario():
        j.job_id = await batch.submit(j)
        jobs = stand_in.jobs()
        jobs[j.job_id]["state"] = "REQUEUE_HOLD"
        (stand_in.directory / "queue.json").write_text(json.dumps({"next": 200, "jobs": jobs}))
        stand_in.fault("scancel", "denied")
        await batch.poll()
        assert batch.active.keys() == {j.job_id} and ended == [] and stand_in.queued() == [j.job_id]
        await batch.poll()  # the cancel is tried again, and goes through
        assert batch.active == {} and ended == [j.job_id]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SLURMJob, "parse_states", classmethod(held_when_requeue_hold(SLURMJob.parse_states)))
        run(scenario())
    assert stand_in.queued() == []


def held_when_requeue_hold(parse_states):
    """SLURM's own REQUEUE_HOLD counts as pending in jqref; held here, to reach the held path."""
    from jqref.job import JobState

    def parse(cls, result, job_ids):
        states = parse_states.__func__(cls, result, job_ids)
        return {
            job_id: (JobState.HELD, word) if word == "REQUEUE_HOLD" else (state, word)
            for job_id, (state, word) in states.items()
        }

    return parse


@pytest.fixture
def cluster_on_stand_in(stand_in):
    made = []

    def make(**options):
        cluster = SLURMCluster(
            cores=1,
            memory="1GiB",
            job_name="fault",
            runner=LocalRunner(timeout=TIMEOUT),
            scheduler_options={"dashboard_address": ":0"},
            poll_interval="100ms",
            **options,
        )
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        try:
            cluster.close()
        except JobCancelError:
            pass
    assert stand_in.queued() == []


async def until_async(condition, what, deadline=10.0):
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"no {what} within {deadline:g} s"
        await asyncio.sleep(0.05)


def until(condition, what, deadline=30.0):
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"no {what} within {deadline:g} s"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["close", "context manager"])
def test_a_synchronous_close_that_could_not_cancel_raises_naming_the_jobs_and_the_fix(
    stand_in, cluster_on_stand_in, how
):
    cluster = cluster_on_stand_in()
    cluster.scale(jobs=2)
    until(lambda: len(stand_in.queued()) == 2, "2 jobs in the queue")
    stand_in.fault("scancel", *["denied"] * 20)  # every cancel close() tries
    with pytest.raises(JobCancelError) as raised:
        if how == "close":
            cluster.close()
        else:
            with cluster:
                pass
    left = stand_in.queued()
    assert len(left) == 2 and all(job_id in str(raised.value) for job_id in left)
    assert f"jqref cleanup {cluster.batch.record.id}" in str(raised.value)
    assert cluster.batch.record.path.exists()  # kept for `jqref cleanup`
    stand_in.fault("scancel")
    cluster.batch.cancel_all_blocking()


def test_an_asynchronous_close_that_could_not_cancel_raises(stand_in):
    async def scenario():
        cluster = await SLURMCluster(
            cores=1,
            memory="1GiB",
            job_name="fault",
            runner=LocalRunner(timeout=TIMEOUT),
            scheduler_options={"dashboard_address": ":0"},
            asynchronous=True,
        )
        cluster.scale(jobs=1)
        end = time.monotonic() + 30
        while len(stand_in.queued()) < 1 and time.monotonic() < end:
            await asyncio.sleep(0.05)
        stand_in.fault("scancel", *["denied"] * 4)
        with pytest.raises(JobCancelError, match="could not cancel job"):
            await cluster.close()
        stand_in.fault("scancel")
        cluster.batch.cancel_all_blocking()

    run(scenario())
    assert stand_in.queued() == []


def test_a_cluster_whose_record_cannot_be_written_stops_before_any_job(stand_in, tmp_path, monkeypatch):
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "jqref").write_text("a file where the records directory should be")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "blocked"))
    with pytest.raises(OSError, match=str(tmp_path / "blocked" / "jqref")):
        SLURMCluster(
            cores=1,
            memory="1GiB",
            job_name="fault",
            n_workers=2,
            runner=LocalRunner(timeout=TIMEOUT),
            scheduler_options={"dashboard_address": ":0"},
        )
    assert stand_in.jobs() == {}
