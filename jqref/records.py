"""A record of each live cluster's jobs on disk, so a crashed client's jobs can be found and cancelled.

Every cluster writes ``$XDG_STATE_HOME/jqref/<id>.json`` (default
``~/.local/state/jqref``) whenever its set of jobs changes, and removes it
when it closes cleanly. A record whose process is gone belongs to a client
that crashed or was killed: ``jqref list`` shows them, ``jqref cleanup``
cancels their jobs with the same batch system and runner the cluster used.

A detached cluster's record (``detach=True``) also holds its session: where
its scheduler keeps its state on the login node, the options and TLS
material to make the cluster again (`JobQueueCluster.attach`), and each
job's worker name. Its jobs are not orphaned when the process is gone: the
session can be attached to, and its scheduler cancels them when left idle.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import pathlib
import shlex
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .placement.detached import stop_scheduler
from .private_files import replace_privately
from .runners import LocalRunner, Runner

#: A record being written is a file named so until it is renamed into place.
PARTIAL_PREFIX = ".tmp-"
#: A partial record older than this was left by a process that died while writing it.
PARTIAL_MAX_AGE = 10 * 60


class RecordError(OSError):
    """A cluster's jobs could not be written to its record: were its process
    to die, nothing would find them."""


def records_dir() -> pathlib.Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return pathlib.Path(state) / "jqref"


def make_private_directory(directory: pathlib.Path) -> None:
    """Make `directory`, or make an existing one, readable by the user alone:
    records hold sessions' TLS keys."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    status = directory.stat()
    if status.st_uid != os.getuid():
        raise PermissionError(
            errno.EPERM,
            f"{directory} belongs to user id {status.st_uid}, not to you "
            f"({os.getuid()}), so it cannot be made private; set XDG_STATE_HOME to a directory "
            "of your own",
        )
    if status.st_mode & 0o077:
        directory.chmod(0o700)


def describe_error(error: OSError) -> str:
    """`error` in words, with the file it is about when that is not in the words already."""
    if error.strerror and error.filename:
        return f"{error.strerror} ({error.filename})"
    return error.strerror or str(error)


def describe_runner(runner: Runner) -> dict:
    """Enough to rebuild the runner in another process."""
    describe = getattr(runner, "describe", None)
    return describe() if describe else {"kind": "local"}


def runner_from(description: dict) -> Runner:
    if description.get("kind") == "ssh":
        from .ssh import SSHRunner

        options = {k: v for k, v in description.items() if k not in ("kind", "destination")}
        return SSHRunner(description["destination"], **options)
    return LocalRunner()


@dataclass
class JobRecord:
    job_class: str  # e.g. "jqref.slurm.SLURMJob"
    cancel_command: list[str]
    runner: dict
    jobs: list[str] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: Worker (spec) name of each job, by id.
    names: dict[str, str] = field(default_factory=dict)
    #: A detached cluster's session (see `session.detached_session`), else None.
    session: dict | None = None
    #: The files the jobs read where the commands run (`worker_files`): TLS
    #: credentials by `Security` field, jqref's preloads by "preload:<module>".
    worker_files: dict[str, str] = field(default_factory=dict)
    #: The job running the Dask scheduler (``scheduler_on="job"``), once submitted; its files are in `worker_files`.
    scheduler_job: str | None = None

    @property
    def all_jobs(self) -> list[str]:
        """The jobs cleanup cancels: the workers', and the scheduler's if it runs in one."""
        return [*self.jobs, *([self.scheduler_job] if self.scheduler_job else [])]

    @property
    def session_in_job(self) -> bool:
        """Whether a detached session's scheduler runs in a batch job
        (``scheduler_on="job"``), which cancelling `scheduler_job` stops,
        rather than as a process on the login node."""
        return self.session is not None and self.session.get("options", {}).get("scheduler_on") == "job"

    @property
    def path(self) -> pathlib.Path:
        return records_dir() / f"{self.id}.json"

    @property
    def detached_session(self) -> dict[str, Any]:
        """The session of a detached cluster's record; a LookupError for any other record."""
        if self.session is None:
            raise LookupError(f"record {self.id} is not a detached session's: its cluster was made without detach=True")
        return self.session

    def save(self, jobs: Mapping[str, str] | Iterable[str]) -> None:
        """Record `jobs` (ids, or ids mapped to their worker names). Written to
        a temporary file, synced and renamed over the record, so that neither a
        crash nor a full disk leaves half a record; it holds a session's TLS
        key, so the file and its directory are the user's alone. A
        `RecordError` if it cannot be written: the jobs would not be found
        after a crash, which the user must know."""
        self.names = dict(jobs) if isinstance(jobs, Mapping) else {}
        self.jobs = sorted(jobs)
        try:
            make_private_directory(records_dir())
            replace_privately(self.path, json.dumps(asdict(self)), PARTIAL_PREFIX)
        except OSError as e:
            by_hand = f": {shlex.join([*self.cancel_command, *self.jobs])}" if self.jobs else ""
            raise RecordError(
                f"jobs of this cluster could not be recorded at {self.path}: {describe_error(e)}; "
                f"if this process dies they must be cancelled by hand{by_hand}"
            ) from e

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def claim(self) -> None:
        """This process owns the cluster now (it attached to the session)."""
        self.pid, self.host = os.getpid(), socket.gethostname()

    def cluster_class(self) -> type:
        module, _, name = self.detached_session["cluster_class"].rpartition(".")
        return getattr(importlib.import_module(module), name)

    @property
    def orphaned(self) -> bool:
        """Whether the process that owned the cluster is gone (only knowable on its host)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def cancel_jobs(self) -> CancelOutcome:
        """Cancel the recorded jobs (the scheduler's job too), and stop a session's scheduler."""
        runner = runner_from(self.runner)
        outcome = CancelOutcome()
        if self.session is not None and not self.session_in_job:
            try:
                outcome.notes.append(stop_scheduler(runner, self.session))
            except (PermissionError, RuntimeError) as e:
                outcome.errors.append(str(e))
        if self.all_jobs:
            module, _, name = self.job_class.rpartition(".")
            job_cls = getattr(importlib.import_module(module), name)
            result = runner.run_blocking([*self.cancel_command, *self.all_jobs])
            if not (result.ok or job_cls.already_gone(result)):
                outcome.errors.append(
                    f"{' '.join(result.argv)} failed (exit {result.returncode}): {result.stderr.strip()}"
                )
        if self.session_in_job and self.session is not None:
            # Its keeper removes it as the scheduler closes, unless the job was killed outright.
            removed = runner.run_blocking(["rm", "-rf", "--", self.session["directory"]])
            if not removed.ok:
                outcome.errors.append(f"could not remove the session's state: {removed.stderr.strip()}")
            elif self.scheduler_job:
                outcome.notes.append(f"its detached scheduler's job {self.scheduler_job} was cancelled with the rest")
        if self.worker_files:  # the workers' key among them, of no use to anyone once the jobs are gone
            removed = runner.run_blocking(["rm", "-f", "--", *self.worker_files.values()])
            if not removed.ok:
                outcome.errors.append(f"could not remove the files the jobs read: {removed.stderr.strip()}")
        return outcome


@dataclass
class CancelOutcome:
    """What `JobRecord.cancel_jobs` could not do (`errors`), and what it found on the way (`notes`)."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Records:
    """What the records directory holds: the records; the files that are not
    readable records, each with why (their jobs may be running, unknown to
    `jqref cleanup`); and partial records a process died while writing."""

    found: list[JobRecord] = field(default_factory=list)
    unreadable: list[tuple[pathlib.Path, str]] = field(default_factory=list)
    abandoned_partials: list[pathlib.Path] = field(default_factory=list)

    def unreadable_reason(self, record_id: str) -> tuple[pathlib.Path, str] | None:
        """The file and reason if the record named `record_id` is there but cannot be read."""
        return next(((path, reason) for path, reason in self.unreadable if path.stem == record_id), None)


def session_record(session: str) -> JobRecord:
    """The record of detached session `session`; an error saying what exists if there is none."""
    records = load_records()
    for record in records.found:
        if record.id == session and record.session is not None:
            return record
    unreadable = records.unreadable_reason(session)
    if unreadable is not None:
        raise LookupError(f"the record of session {session!r}, {unreadable[0]}, cannot be read: {unreadable[1]}")
    sessions = [r.id for r in records.found if r.session is not None]
    raise LookupError(
        f"no detached session {session!r} in {records_dir()}; "
        f"sessions there: {', '.join(sessions) or 'none'} (jqref list shows them)"
    )


def load_records() -> Records:
    """Every record in `records_dir`, and every file there that should be one and is not."""
    directory = records_dir()
    records = Records()
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return records
    for name in names:
        path = directory / name
        if name.startswith(PARTIAL_PREFIX):
            with contextlib.suppress(FileNotFoundError):  # renamed into place meanwhile
                if time.time() - path.stat().st_mtime > PARTIAL_MAX_AGE:
                    records.abandoned_partials.append(path)
            continue
        if not name.endswith(".json"):
            continue
        try:
            records.found.append(JobRecord(**json.loads(path.read_text())))
        except FileNotFoundError:  # its cluster closed meanwhile
            continue
        except OSError as e:
            records.unreadable.append((path, describe_error(e)))
        except ValueError as e:
            records.unreadable.append((path, f"not JSON ({e})"))
        except TypeError as e:
            records.unreadable.append((path, f"not a jqref record ({e})"))
    return records
