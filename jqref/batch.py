"""The jobs one cluster has in a batch system: submitted, polled, cancelled.

Jobs submitted at the same moment (one scale() or adapt step) go in as
one array where the batch system has arrays: one submit command for up to
`max_array_size` jobs. Each element is still a job of its own, with its own
id, state, replacement and cancel; only its script is shared, and picks the
element's worker name by its index.

All jobs of a cluster are polled with one batched status command per
interval, and jobs cancelled at the same moment (a scale-down, `close()`)
are cancelled with one command: either is split into chunks only when its
ids would make too long a command line. Where the batch system can signal a
job without ending it, a running job is cancelled in two steps: SIGTERM,
which its workers handle by closing and handing their tasks back, and the
cancel command only if the job is still there after the grace period.

A job the batch system reports as over (failed, cancelled from outside, or
simply gone from the queue) is handed to `on_ended` so the cluster can
replace it. A poll that fails says nothing about the jobs and changes
nothing; a job missing from one answer is only in doubt (status commands
answer empty or cut short when the controller is busy): it is asked about
again at once, and counts as gone if that answer misses it too.

Each poll also reads why a job waits (the batch system's own reason, from
the same status command), kept on the job and reported once each time it
changes; a job that ended is described by the batch system's word for its
end and the last lines of its stderr file where jqref can name it, for the
cluster to decide whether to replace it.

A submission whose outcome is unknown (the command timed out, the
connection dropped, or it printed no id that can be read) is looked up by
its tag: found, it is tracked as if submitted; confirmed absent, its error
stands; if even the lookup fails, it is looked up again when the cluster
closes, so that nothing is left in the queue unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from distributed.core import Status

from .job import Job, JobState
from .records import JobRecord
from .runners import CommandError, CommandTimeout, ConnectionLost, LocalRunner, Runner

logger = logging.getLogger(__name__)


#: Ids one command may name: far below ARG_MAX, and short enough for any
#: sshd and login shell to take as one command line.
MAX_IDS_PER_COMMAND = 500
MAX_ID_CHARACTERS_PER_COMMAND = 16_000
#: The shell's exit status for a command it cannot find (LocalRunner's too).
COMMAND_NOT_FOUND = 127
#: Elements per array when neither the user nor the site says.
DEFAULT_MAX_ARRAY_SIZE = 1000
#: Lines of an ended job's stderr file shown with its end.
ERROR_TAIL_LINES = 20
#: Ended jobs the jobs table keeps showing.
ENDED_JOBS_SHOWN = 10
#: Seconds a job stays pending before, and between, asks of a batch system's
#: own reason command (`Job.pending_reason_command`, SGE's qstat -j).
PENDING_REASON_AFTER = 30.0


class JobCancelError(Exception):
    """Some jobs could not be cancelled, or are still in the queue after
    cancelling. Not a RuntimeError: distributed's synchronous ``close()``
    swallows those, and this one must reach the user."""


class UnreadableSubmitAnswer(CommandError):
    """A submit command succeeded but printed no job id that can be read."""


def chunks(
    ids: Sequence[str], max_ids: int = MAX_IDS_PER_COMMAND, max_characters: int = MAX_ID_CHARACTERS_PER_COMMAND
) -> list[list[str]]:
    """`ids` in order, cut into runs that each fit one command line."""
    runs: list[list[str]] = []
    size = 0
    for job_id in ids:
        if not runs or len(runs[-1]) == max_ids or size + len(job_id) + 1 > max_characters:
            runs.append([])
            size = 0
        runs[-1].append(job_id)
        size += len(job_id) + 1
    return runs


@dataclass
class _SubmitRound:
    """The submissions asked for in one moment, and each one's id or error."""

    jobs: list[Job] = field(default_factory=list)
    outcomes: dict[Job, str | Exception] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _CancelRound:
    """The cancels asked for in one moment: one command per chunk for all of them."""

    jobs: dict[str, Job] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class BatchQueue:
    _instances: weakref.WeakSet[BatchQueue] = weakref.WeakSet()

    def __init__(
        self,
        job_cls: type[Job],
        runner: Runner,
        on_ended: Callable[[Job, str], None] = lambda job, detail: None,
        record: JobRecord | None = None,
        report: Callable[[str], None] = logger.info,
    ):
        self.job_cls = job_cls
        self.runner = runner
        self.on_ended = on_ended
        self.record = record
        #: Where news about the jobs goes (why one waits): the cluster's log.
        self.report = report
        #: The last jobs that ended, newest last, for the jobs table.
        self.ended: deque[Job] = deque(maxlen=ENDED_JOBS_SHOWN)
        #: The site's limits (`Job.parse_site_limits`), once the cluster has read them.
        self.site_limits: dict[str, int] | None = None
        #: When `pending_reason_command` last ran (time.time()).
        self._pending_reasons_asked = 0.0
        #: Jobs submitted and not known to be over, by job id.
        self.active: dict[str, Job] = {}
        #: Jobs we asked the batch system to cancel and have not yet seen leave.
        self.cancelled: dict[str, Job] = {}
        #: Why each job whose last cancel failed is still here, by id.
        self.cancel_errors: dict[str, str] = {}
        #: Submissions whose outcome is still unknown: (the job submitted, the jobs it stands for).
        self.unconfirmed: list[tuple[Job, list[Job]]] = []
        self._submit_round: _SubmitRound | None = None
        self._cancel_round: _CancelRound | None = None
        self._hard_cancels: set[asyncio.Task] = set()
        #: Cleared when this site lacks the signal command (e.g. qsig under the Slurm-backed PBS commands).
        self._can_signal = job_cls.signal_command is not None
        self.polls = 0
        self.submitted = 0
        self.submit_commands = 0
        self.cancel_commands = 0
        BatchQueue._instances.add(self)

    def adopt(self, job: Job, job_id: str) -> None:
        """Track `job_id`, submitted by an earlier client of the same cluster (attach), as `job`."""
        job.job_id = job_id
        job.status = Status.running
        self.active[job_id] = job

    async def submit(self, job: Job) -> str:
        """Submit one job, together with every other job whose submission is
        asked for in the same moment (SpecCluster starts the jobs of one
        scale() or adapt step concurrently): as arrays where the batch system
        has them and the cluster allows them, else one submission each."""
        submit_round = self._submit_round
        leader = submit_round is None
        if submit_round is None:
            submit_round = self._submit_round = _SubmitRound()
        submit_round.jobs.append(job)
        if leader:
            try:
                await asyncio.sleep(0)  # the other submissions of this moment join the round
                self._submit_round = None
                await asyncio.gather(
                    *(
                        self._submit_together(jobs, submit_round.outcomes)
                        for jobs in self._submissions(submit_round.jobs)
                    )
                )
                self.save_record_or_warn()  # one write for the jobs of one scale()
            finally:
                self._submit_round = None
                submit_round.done.set()
        else:
            await submit_round.done.wait()
        outcome = submit_round.outcomes.get(job) or RuntimeError(f"the submission of {job.name} was abandoned")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def read_site_limits(self, job: Job) -> dict[str, int]:
        """The site's limits on jobs like `job` (`Job.site_limit_commands`),
        asked once; a site that does not answer has none jqref knows of."""
        if self.site_limits is None:
            self.site_limits = {}
            for argv in job.site_limit_commands():
                try:
                    result = await self.runner.run(argv)
                except CommandError as e:
                    logger.info("could not read the site's limits (%s); going without", e)
                    continue
                self.site_limits.update(job.parse_site_limits(result))
            if self.site_limits:
                self.report(
                    "the site's limits: " + ", ".join(f"{name}={value}" for name, value in self.site_limits.items())
                )
        return self.site_limits

    def _submissions(self, jobs: list[Job]) -> list[list[Job]]:
        """`jobs` grouped into the submissions they become: an array for the
        jobs of one cluster (they share their options), up to its size limit."""
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault((type(job), id(job.options), job.scheduler, id(job.security)), []).append(job)
        submissions = []
        for group in groups.values():
            template = group[0]
            if not (template.array_index_variable and template.arrays):
                submissions += [[job] for job in group]
                continue
            size = template.max_array_size or (self.site_limits or {}).get("max_array_size") or DEFAULT_MAX_ARRAY_SIZE
            submissions += [group[start : start + size] for start in range(0, len(group), size)]
        return submissions

    async def _submit_together(self, jobs: list[Job], outcomes: dict[Job, str | Exception]) -> None:
        """One submission for `jobs`, its outcome (the id or the error) recorded for each."""
        try:
            job_ids = await self._submit_reconciled(jobs)
        except Exception as e:
            for job in jobs:
                outcomes[job] = e
            return
        now = time.time()
        for job, job_id in zip(jobs, job_ids):
            outcomes[job] = job_id
            self.active[job_id] = job
            job.submitted_at = now
        self.submitted += len(jobs)
        if len(jobs) == 1:
            logger.info("submitted %s as job %s", jobs[0].name, job_ids[0])
        else:
            logger.info(
                "submitted %d jobs (%s to %s) as array jobs %s to %s",
                len(jobs),
                jobs[0].name,
                jobs[-1].name,
                job_ids[0],
                job_ids[-1],
            )

    async def _submit_reconciled(self, jobs: list[Job]) -> list[str]:
        """The ids of `jobs` once submitted, and submitted only once even if
        the submission's outcome is unknown for a while."""
        script_job = jobs[0] if len(jobs) == 1 else jobs[0].array_of(jobs)
        try:
            first_id = await self._submit_once(script_job)
        except (ConnectionLost, CommandTimeout, UnreadableSubmitAnswer) as unknown:
            first_id = await self._look_up(script_job, jobs, unknown)
        return self._element_ids(jobs, first_id)

    def _element_ids(self, jobs: list[Job], first_id: str) -> list[str]:
        if len(jobs) == 1:
            return [first_id]
        return [self.job_cls.element_id(first_id, self.job_cls.array_first_index + i) for i in range(len(jobs))]

    async def _look_up(self, script_job: Job, jobs: list[Job], unknown: CommandError) -> str:
        """The id of a submission whose outcome is `unknown`, looked up by its
        tag once a submit command that outlived its caller has finished. A lost
        connection is submitted again if the job is not there; a command that
        timed out or printed nonsense is not (it would again), and its error
        stands once the job is known not to be in the queue."""
        remote_pid = getattr(unknown, "remote_pid", None)
        if remote_pid is not None:
            await self._wait_until_gone(remote_pid)
        try:
            first_id = await self._find(script_job)
        except CommandError as e:
            self.unconfirmed.append((script_job, jobs))
            raise CommandError(
                unknown.result,
                f"{unknown.what}, and whether its job reached the queue is "
                f"unknown: looking for it by its tag failed ({e}); the cluster looks again "
                "when it closes",
            ) from unknown
        if first_id is not None:
            logger.warning(
                "submission of %s %s but reached the queue as job %s", script_job.name, unknown.what, first_id
            )
            return first_id
        if not isinstance(unknown, ConnectionLost):
            raise unknown
        logger.warning(
            "submission of %s was interrupted before it reached the queue; submitting again", script_job.name
        )
        return await self._submit_once(script_job)

    async def _submit_once(self, job: Job) -> str:
        script = job.job_script()
        argv = job.submit_argv()
        if job.submit_reads_stdin:
            result = await self.runner.run(argv, stdin=script)
        else:
            async with self.runner.script_file(script) as path:
                result = await self.runner.run([*argv, path])
        self.submit_commands += 1
        output = result.check().stdout
        try:
            return self.job_cls.parse_job_id(output)
        except ValueError as e:
            raise UnreadableSubmitAnswer(result, f"printed no job id ({e})") from None

    async def _wait_until_gone(self, pid: int, timeout: float = 120.0) -> None:
        """Until process `pid` no longer runs where the commands run: a submit
        command cut off from its connection may still be committing its job."""
        deadline = time.monotonic() + timeout
        wait = 0.1
        while time.monotonic() < deadline:
            with contextlib.suppress(ConnectionLost):
                if not (await self.runner.run(["ps", "-p", str(pid)])).ok:
                    return
            await asyncio.sleep(wait)
            wait = min(2 * wait, 2.0)
        logger.warning(
            "the interrupted submit command (pid %s) still runs after %g s; looking for its job anyway", pid, timeout
        )

    async def _find(self, job: Job, attempts: int = 3) -> str | None:
        """The id of the queued job carrying `job`'s tag, if any."""
        argv = job.find_command()
        for _ in range(attempts - 1):
            with contextlib.suppress(ConnectionLost):
                return self.job_cls.parse_found(await self.runner.run(argv), job.tag)
        return self.job_cls.parse_found(await self.runner.run(argv), job.tag)  # the last attempt raises

    async def cancel(self, job: Job) -> None:
        """Cancel one job, together with every other job whose cancel is asked
        for in the same moment (SpecCluster closes the jobs of a scale-down
        concurrently). A failure is recorded and logged, not raised, so that
        closing a cluster goes on to cancel the rest and then reports them all."""
        if job.job_id is None or job.job_id not in self.active:
            return
        cancel_round = self._cancel_round
        leader = cancel_round is None
        if cancel_round is None:
            cancel_round = self._cancel_round = _CancelRound()
        cancel_round.jobs[job.job_id] = job
        if not leader:
            await cancel_round.done.wait()
            return
        await asyncio.sleep(0)  # the other cancels of this moment, started together, join the round
        self._cancel_round = None
        try:
            stale = self._can_signal and any(job.state is JobState.PENDING for job in cancel_round.jobs.values())
            if self.job_cls.unwarned_states or stale:
                # Asked afresh: a job started since the last poll is signalled, not killed.
                await self._wait_until_warned_on_cancel(cancel_round.jobs)
            at_once = cancel_round.jobs
            if self._can_signal:
                at_once = await self._signal(cancel_round.jobs)
            for chunk in chunks(list(at_once)):
                await self._cancel_chunk({job_id: at_once[job_id] for job_id in chunk})
        finally:
            cancel_round.done.set()

    async def _wait_until_warned_on_cancel(self, jobs: dict[str, Job]) -> None:
        """Until none of `jobs` is in a state its cancel would kill it in
        without warning, asking the batch system afresh (a poll's answer may
        be a moment old), for at most the grace period."""
        deadline = time.monotonic() + next(iter(jobs.values())).cancel_grace_period
        while True:
            try:
                states = await self._states(list(jobs))
            except CommandError as e:  # cancelling is what is left
                logger.info("could not check the jobs' states before cancelling them: %s", e)
                return
            states = {job_id: states[job_id] for job_id in jobs if job_id in states}
            unwarned = [job_id for job_id, (_, word) in states.items() if word in self.job_cls.unwarned_states]
            for job_id, (state, _) in states.items():
                if state.active:
                    jobs[job_id].state = state
            if not unwarned or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.5)

    async def _signal(self, jobs: dict[str, Job]) -> dict[str, Job]:
        """Send the running ones of `jobs` SIGTERM and cancel them later if they
        are still there; return the jobs to cancel at once (not running, or the
        signal failed: the job just ended, or this site has no such command)."""
        at_once = {job_id: job for job_id, job in jobs.items() if job.state is not JobState.RUNNING}
        for chunk in chunks([job_id for job_id in jobs if job_id not in at_once]):
            template = jobs[chunk[0]]
            try:
                result = await self.runner.run(template.signal_argv(chunk))
            except CommandError as e:  # no answer: cancelling is what is left
                result = e.result
            if not result.ok and not self.job_cls.already_gone(result):  # gone is as good as signalled
                if result.returncode == COMMAND_NOT_FOUND:
                    self._can_signal = False
                logger.info("could not signal jobs %s, cancelling them now: %s", ", ".join(chunk), CommandError(result))
                at_once.update({job_id: jobs[job_id] for job_id in chunk})
                continue
            signalled = {job_id: jobs[job_id] for job_id in chunk}
            for job_id, job in signalled.items():
                self.active.pop(job_id, None)
                self.cancelled[job_id] = job
            task = asyncio.create_task(self._cancel_after(template.cancel_grace_period, signalled))
            self._hard_cancels.add(task)
            task.add_done_callback(self._hard_cancels.discard)
        return at_once

    async def _cancel_after(self, grace_period: float, jobs: dict[str, Job]) -> None:
        """The second step: cancel the signalled jobs that have not left."""
        await asyncio.sleep(grace_period)
        remaining = {job_id: job for job_id, job in jobs.items() if job_id in self.cancelled}
        for chunk in chunks(list(remaining)):
            await self._cancel_chunk({job_id: remaining[job_id] for job_id in chunk})

    async def _cancel_chunk(self, jobs: dict[str, Job]) -> None:
        """One cancel command for `jobs`. If it fails for several, they are
        cancelled one by one: some batch systems fail the whole command when
        one of its jobs has just left, and each job's outcome must be known."""
        argv = next(iter(jobs.values())).cancel_argv(list(jobs))
        self.cancel_commands += 1
        try:
            try:
                result = await self.runner.run(argv)
            except ConnectionLost:  # cancelling twice is harmless
                result = await self.runner.run(argv)
        except CommandError as e:  # no answer: the jobs are still ours to cancel
            result = e.result
        if result.ok or (len(jobs) == 1 and self.job_cls.already_gone(result)):
            for job_id, job in jobs.items():
                # A poll may have seen it end while we were cancelling.
                self.active.pop(job_id, None)
                self.cancelled[job_id] = job
                self.cancel_errors.pop(job_id, None)
            return
        if len(jobs) > 1:
            for job_id, job in jobs.items():
                await self._cancel_chunk({job_id: job})
            return
        message = str(CommandError(result))
        ((job_id, job),) = jobs.items()
        self.cancel_errors[job_id] = message
        logger.error("could not cancel job %s (%s): %s", job_id, job.name, message)

    def save_record(self) -> None:
        """Write the record of the jobs in the queue; an OSError says it could not be."""
        if self.record is not None:
            self.record.save({job_id: job.name for job_id, job in {**self.active, **self.cancelled}.items()})

    def save_record_or_warn(self) -> None:
        """Write the record, or say loudly that it could not be: the jobs are
        in the queue either way, and the cluster goes on tracking them."""
        try:
            self.save_record()
        except OSError as e:
            logger.error(
                "%s: if this process dies, its jobs (%s) must be cancelled by hand",
                e,
                ", ".join(sorted({**self.active, **self.cancelled})) or "none yet",
            )

    async def poll(self) -> None:
        """Ask the batch system about every job once; report the ones that ended."""
        ids = [*self.active, *self.cancelled]
        if not ids:
            return
        states, reasons = await self._states_and_reasons(ids)
        missing = [job_id for job_id in ids if job_id not in states]
        if missing:  # asked again at once: one answer is not trusted to say they left
            again, more_reasons = await self._states_and_reasons(missing)
            states.update(again)
            reasons.update(more_reasons)
        self.polls += 1
        changed = False
        for job_id in ids:
            state, detail = states.get(job_id, (JobState.ENDED, "left the queue"))
            if job_id in self.cancelled:
                if state is JobState.ENDED:
                    self.cancelled.pop(job_id).ended(state)
                    changed = True
            elif job_id in self.active:  # not cancelled while we were polling
                job = self.active[job_id]
                job.state = state
                if job_id in reasons:  # else the status command says nothing of reasons (SGE's)
                    self._note_reason(job, reasons[job_id])
                if state is JobState.HELD:
                    await self.cancel(job)  # it would sit in the queue for ever
                    if job_id in self.active:  # the cancel failed: still ours, tried again next poll
                        continue
                if not state.active:
                    self.active.pop(job_id, None)
                    job.ended(state)
                    job.ended_as = detail
                    job.error_tail = await self._error_tail(job)
                    self.ended.append(job)
                    self.on_ended(job, detail)
                    changed = True
        if changed:
            self.save_record_or_warn()
        await self._ask_why_pending()

    async def _ask_why_pending(self) -> None:
        """Where the status command gives no reason, ask the batch system's own
        command about the jobs pending for `PENDING_REASON_AFTER`, at most that
        often: it is heavier than a poll. A failure costs only the reasons."""
        now = time.time()
        if now - self._pending_reasons_asked < PENDING_REASON_AFTER:
            return
        waiting = {
            job_id: job
            for job_id, job in self.active.items()
            if job.state is JobState.PENDING and job.submitted_at and now - job.submitted_at >= PENDING_REASON_AFTER
        }
        argv = self.job_cls.pending_reason_command(list(waiting)) if waiting else None
        if argv is None:
            return
        self._pending_reasons_asked = now
        try:
            result = await self.runner.run(argv)
        except CommandError as e:
            logger.info("could not ask why jobs %s wait: %s", ", ".join(waiting), e)
            return
        for job_id, reason in self.job_cls.parse_pending_reasons(result, list(waiting)).items():
            if job_id in waiting:
                self._note_reason(waiting[job_id], reason)

    async def _states(self, ids: list[str]) -> dict[str, tuple[JobState, str]]:
        """What the batch system says about `ids`' states."""
        return (await self._states_and_reasons(ids))[0]

    async def _states_and_reasons(self, ids: list[str]) -> tuple[dict[str, tuple[JobState, str]], dict[str, str]]:
        """What the batch system says about `ids`, their states and why the
        waiting ones wait: one status command, or one per chunk."""
        states, reasons = {}, {}
        for chunk in self._status_chunks(ids):
            result = await self.runner.run(self.job_cls.status_command(chunk))
            states.update(self.job_cls.parse_states(result, chunk))
            reasons.update(self.job_cls.parse_reasons(result, chunk))
        return states, reasons

    def _note_reason(self, job: Job, reason: str) -> None:
        """Keep why `job` waits, and say so once each time it changes."""
        if reason == job.reason:
            return
        job.reason = reason
        if reason and job.state is not JobState.ENDED:  # an end's reason goes with the end
            self.report(f"job {job.job_id} ({job.name}) is {job.state.value}: {reason}")

    async def _error_tail(self, job: Job) -> str:
        """The last lines of an ended job's stderr file, where jqref can name
        it and read it through the runner; empty otherwise."""
        path = job.error_file()
        if path is None:
            return ""
        try:
            result = await self.runner.run(["tail", "-n", str(ERROR_TAIL_LINES), "--", path])
        except CommandError:
            return ""
        return result.stdout.rstrip() if result.ok else ""

    def jobs_table(self) -> list[tuple[str, str, str, float | None]]:
        """(id, state, reason, age in seconds) of each job in the queue, then
        of the last ones that ended (their state the batch system's word for the end)."""
        now = time.time()
        table = []
        for job in [*self.active.values(), *self.ended]:
            state = (job.ended_as or "ended") if job.state is JobState.ENDED else job.state.value
            age = now - job.submitted_at if job.submitted_at is not None else None
            table.append((str(job.job_id), state, job.reason, age))
        return table

    def _status_chunks(self, ids: list[str]) -> list[list[str]]:
        """One status command for all ids unless naming them all would make
        too long a command line (SGE's lists every job and names none)."""
        if len(" ".join(self.job_cls.status_command(ids))) <= MAX_ID_CHARACTERS_PER_COMMAND:
            return [ids]
        return chunks(ids)

    async def watch(self, interval: float) -> None:
        """Poll forever; meant to run as a task that the owner cancels."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.warning("polling the batch system failed; will retry: %s", e)

    async def cancel_all(self, timeout: float = 120.0, interval: float = 1.0, failed_polls: int = 5) -> None:
        """Cancel every job still active (and any unconfirmed submission found
        now), wait until the batch system shows none of them, and raise
        `JobCancelError` naming the jobs left if that did not happen. Waiting
        stops early once the status command has failed `failed_polls` times
        in a row: nothing more can be learnt from it."""
        await self._find_unconfirmed()
        await asyncio.gather(*(self.cancel(job) for job in list(self.active.values())))
        deadline = time.monotonic() + timeout
        wait = min(0.1, interval)
        poll_errors: list[CommandError] = []
        while self.cancelled and time.monotonic() < deadline and len(poll_errors) < failed_polls:
            try:
                await self.poll()
                poll_errors = []
            except CommandError as e:
                poll_errors.append(e)
            if self.cancelled:
                await asyncio.sleep(wait)
                wait = min(wait * 2, interval)
        for task in self._hard_cancels:  # their jobs have left, or are reported below
            task.cancel()
        problems = [f"could not cancel job {job_id}: {error}" for job_id, error in self.cancel_errors.items()]
        problems += [
            f"the submission of {job.name} may have reached the queue (tag {job.tag}) and could not be looked up"
            for job, _ in self.unconfirmed
        ]
        if self.cancelled:
            why = (
                f"the status command failed {len(poll_errors)} times in a row ({poll_errors[-1]})"
                if poll_errors
                else f"{timeout:g} s after cancelling"
            )
            problems.append(f"not confirmed gone, {why}: {', '.join(sorted(self.cancelled))}")
        if problems:
            left = sorted({*self.cancel_errors, *self.cancelled})
            cleanup = f"`jqref cleanup {self.record.id}` cancels them" if self.record is not None else ""
            raise JobCancelError(
                f"jobs may be left in the queue ({', '.join(left) or 'ids unknown'}): "
                f"{'; '.join(problems)}" + (f". {cleanup}" if cleanup else "")
            )

    async def _find_unconfirmed(self) -> None:
        """Look once more for the submissions whose outcome was unknown: found
        ones are tracked, to be cancelled with the rest."""
        for script_job, jobs in list(self.unconfirmed):
            try:
                first_id = await self._find(script_job)
            except CommandError as e:
                logger.warning("still cannot tell whether %s reached the queue: %s", script_job.name, e)
                continue
            self.unconfirmed.remove((script_job, jobs))
            if first_id is not None:
                logger.warning("the submission of %s had reached the queue as job %s", script_job.name, first_id)
                for job, job_id in zip(jobs, self._element_ids(jobs, first_id)):
                    job.job_id = job_id
                    self.active[job_id] = job

    def cancel_all_blocking(self) -> None:
        """Last resort at interpreter exit, when no event loop is left."""
        if not self.active:
            return
        template = next(iter(self.active.values()))
        for chunk in chunks(list(self.active)):
            result = self.runner.run_blocking(template.cancel_argv(chunk))
            if result.ok:
                self.cancelled.update({job_id: self.active.pop(job_id) for job_id in chunk})
            else:
                logger.error("could not cancel jobs at exit: %s", CommandError(result))


#: A job started on its own submits here, through a queue of its own.
Job.lone_job_queue = lambda job_cls: BatchQueue(job_cls, LocalRunner())
