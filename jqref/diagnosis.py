"""Telling the user why workers do not come: the jobs table (id, state, the
batch system's reason, age) for the cluster's repr and for the error raised
when workers do not arrive, and an ended job's cause in words."""

from __future__ import annotations

import html
from collections.abc import Sequence

from distributed.exceptions import WorkerStartTimeoutError

from .job import Job

#: A row of the jobs table: job id, state, reason, age in seconds (None: not known).
JobRow = tuple[str, str, str, float | None]
#: Characters of a reason or an error tail line the HTML table shows.
LONGEST_CELL = 300


class WorkersDidNotArrive(WorkerStartTimeoutError):
    """distributed's timeout, with what the batch system says about the jobs."""

    def __init__(self, available_workers: int, expected_workers: int, timeout: float, diagnosis: str):
        super().__init__(available_workers, expected_workers, timeout)
        self.diagnosis = diagnosis

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.diagnosis}"


def age(seconds: float | None) -> str:
    """An age in the largest whole unit: 42s, 3m 5s, 2h 10m."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def jobs_text(rows: Sequence[JobRow]) -> str:
    """The jobs table as aligned text lines (for errors and logs)."""
    if not rows:
        return "no jobs in the queue"
    lines = [
        ("job", "state", "age", "reason"),
        *((job, state, age(seconds), reason) for job, state, reason, seconds in rows),
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(3)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(line[:3], widths)), line[3]]).rstrip() for line in lines
    )


def jobs_html(rows: Sequence[JobRow]) -> str:
    """The jobs table as HTML, for the cluster's repr in a notebook."""
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td style='text-align: left'>{html.escape(cell[:LONGEST_CELL])}</td>"
            for cell in (job, state, reason, age(seconds))
        )
        + "</tr>"
        for job, state, reason, seconds in rows
    )
    header = "".join(f"<th style='text-align: left'>{title}</th>" for title in ("Job", "State", "Reason", "Age"))
    return f"<details open><summary>Batch jobs</summary><table><tr>{header}</tr>{cells}</table></details>"


def end_cause(job: Job) -> str:
    """How `job` ended, in the batch system's words, with its reason, the
    option that would change it, and the last lines of its stderr file."""
    words = job.ended_as or "ended"
    if job.reason:
        words += f" ({job.reason})"
    option = job.option_at_fault()
    if option is not None:
        words += (
            f": the batch system ended it for its {option}={job.option(option)!r}; "
            f"raise {option}= or ask less of the workers"
        )
    if job.error_tail:
        words += f"; the end of {job.error_file()}:\n" + job.error_tail
    return words
