"""The jqref command: see the clusters jqref recorded, and cancel the jobs crashed clients left behind.

    jqref list              every recorded cluster, its process and its jobs,
                            and the detached sessions one can attach to
    jqref status [ID...]    one record in detail (all, naming none): its jobs
                            and their worker names, where its commands run,
                            its age, whether its process runs, a detached
                            session's state directory; runs no command
    jqref cleanup [ID...]   cancel the jobs of clusters whose process is gone
                            (only the records named, if any; --all: running ones too);
                            a detached session only when named or with --all,
                            its scheduler stopped too; and remove what writes of
                            records that never finished left (--dry-run: only
                            say what it would do)
    jqref --version         jqref's version, and the Python and distributed it runs with

Records that cannot be read are shown as such. cleanup exits non-zero if any
job could not be cancelled, or a record named (or, naming none, any record)
could not be read, does not exist or was left alone because its process runs;
status if a record named does not exist or cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shlex
import socket
import sys
import time

import click

from . import __version__
from .compat_versions import installed_distributed, untested_distributed
from .records import CancelOutcome, JobRecord, Records, describe_error, load_records, records_dir
from .runners import CommandError


def read_records() -> Records:
    """The records, or exit saying why their directory cannot be read."""
    try:
        return load_records()
    except OSError as e:
        sys.exit(f"jqref: cannot read the records in {records_dir()}: {describe_error(e)}")


def unreadable(path, reason) -> str:
    return (
        f"its record {path} cannot be read ({reason}): the jobs it names, if any, must be cancelled by hand, "
        "then the file deleted"
    )


def version_text() -> str:
    """What `jqref --version` prints: jqref's version, the Python and
    distributed it runs with, and a warning if that distributed is newer than
    the one jqref was checked against."""
    text = f"jqref {__version__} (Python {platform.python_version()}, distributed {installed_distributed()})"
    warning = untested_distributed()
    return f"{text}\nwarning: {warning}" if warning else text


class VersionAction(argparse.Action):
    """--version: print `version_text` as it is (argparse's own would rewrap it) and exit."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def ago(seconds: float) -> str:
    """A duration in the largest unit that keeps it readable: 45 s, 12 min, 3.5 h, 2.0 days."""
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def process_state(record: JobRecord) -> str:
    """Whether the process that owns the record runs, as far as this machine can tell."""
    owner = f"pid {record.pid} on {record.host}"
    if record.host != socket.gethostname():
        return f"{owner}: another host, so whether it runs cannot be told from here"
    if record.orphaned:
        return f"{owner}: gone" + (
            "" if record.session is not None else f" (its jobs are orphaned: jqref cleanup {record.id} cancels them)"
        )
    return f"{owner}: runs"


def where_commands_run(record: JobRecord) -> str:
    runner = record.runner
    if runner.get("kind") == "ssh":
        details = [
            f"{name.replace('_', ' ')} {runner[key]}"
            for key, name in (
                ("config_file", "ssh config"),
                ("identity_file", "identity"),
                ("known_hosts", "known_hosts"),
            )
            if runner.get(key)
        ]
        details += ["through a login shell"] if runner.get("login_shell") else []
        return f"over SSH on {runner['destination']}" + (f" ({', '.join(details)})" if details else "")
    return f"on {record.host} itself (no SSH)"


def session_directory(record: JobRecord) -> str:
    """Where a detached session's scheduler keeps its state, said so that it can be found."""
    directory = record.detached_session["directory"]
    if record.runner.get("kind") == "ssh":
        place = f"~/{directory}" if not directory.startswith(("/", "~")) else directory
        return f"{place} on {record.runner['destination']}"
    if directory.startswith(("/", "~")):
        return f"{directory} on {record.host}"
    return f"{directory} on {record.host}, relative to the directory the cluster was made in"


def status_lines(record: JobRecord) -> list[str]:
    """A record in detail, one fact a line."""
    system = record.job_class.rpartition(".")[2].removesuffix("Job")  # SLURM, SGE, HTCondor, PBS, Local
    lines = [f"{record.id}: {system} {'detached session' if record.session is not None else 'cluster'}"]

    def add(label: str, value: str) -> None:
        lines.append(f"  {label + ':':<14}{value}")

    add("record", str(record.path))
    with contextlib.suppress(OSError):  # it may have been removed meanwhile
        add("last written", f"{ago(time.time() - record.path.stat().st_mtime)} ago (when its jobs last changed)")
    if record.session is not None:
        add("started", f"{ago(time.time() - record.session['started'])} ago")
    add("process", process_state(record))
    add("commands", f"{where_commands_run(record)}; cancelled with {shlex.join(record.cancel_command)}")
    if record.session is not None:
        session_cluster = record.session["cluster_class"].rpartition(".")[2]
        add("state", session_directory(record))
        attach = f"{session_cluster}.attach({record.id!r})"
        add("attach", f"{attach} ({'attachable now' if record.orphaned else 'a process is attached'})")
    if record.scheduler_job:
        add("scheduler", f"job {record.scheduler_job} (scheduler_on='job')")
    add("jobs", f"{len(record.jobs)}" + ("" if record.jobs else " (none)"))
    width = max((len(job) for job in record.jobs), default=0)
    lines += [f"    {job:<{width}}  {record.names.get(job, '(worker name not recorded)')}" for job in record.jobs]
    if record.worker_files:
        add(
            "job files",
            " ".join(sorted(record.worker_files.values()))
            + " (the workers' TLS credentials and jqref's preloads, removed by cleanup)",
        )
    return lines


def status(args) -> int:
    records = read_records()
    failed = 0
    known = {record.id for record in records.found} | {path.stem for path, _ in records.unreadable}
    for record_id in [record_id for record_id in args.ids if record_id not in known]:
        failed += 1
        print(f"{record_id}: no such record in {records_dir()} (jqref list shows them)", file=sys.stderr)
    shown = [record for record in records.found if not args.ids or record.id in args.ids]
    if not (args.ids or shown or records.unreadable):
        print(f"no clusters recorded in {records_dir()}")
    for i, record in enumerate(shown):
        print(("\n" if i else "") + "\n".join(status_lines(record)))
    for path, reason in records.unreadable:
        if not args.ids or path.stem in args.ids:
            failed += 1
            print(f"{path.stem}: {unreadable(path, reason)}", file=sys.stderr)
    return 1 if failed else 0


def list_records(_args) -> int:
    records = read_records()
    if not (records.found or records.unreadable or records.abandoned_partials):
        print(f"no clusters recorded in {records_dir()}")
    for record in records.found:
        status = "gone (orphaned jobs)" if record.orphaned else "running or on another host"
        if record.session is not None:
            age = (time.time() - record.session["started"]) / 60
            cluster = record.session["cluster_class"].rpartition(".")[2]
            status = (
                f"detached session, started {age:.0f} min ago, "
                f"{'attachable' if record.orphaned else 'attached'}: {cluster}.attach({record.id!r})"
            )
        print(
            f"{record.id}  {record.job_class.rpartition('.')[2]}  pid {record.pid}@{record.host}: {status}; "
            f"{len(record.jobs)} job(s): {' '.join(record.jobs) or '-'}"
        )
    for path, reason in records.unreadable:
        print(f"{path.stem}  unreadable: {unreadable(path, reason)}")
    for path in records.abandoned_partials:
        print(f"{path}: a record whose writing never finished (jqref cleanup removes it)")
    return 0


def planned_cleanup(record: JobRecord) -> str:
    """What cleaning up `record` would do, for --dry-run: the same steps as
    `JobRecord.cancel_jobs` and the removal of the record, none of them run."""
    where = f"over SSH on {record.runner['destination']}" if record.runner.get("kind") == "ssh" else f"on {record.host}"
    steps = []
    if record.session_in_job:
        steps.append(f"remove its detached session's state ({session_directory(record)})")
    elif record.session is not None:
        steps.append(f"stop its detached scheduler (state in {session_directory(record)}) if it still runs")
    if record.all_jobs:
        jobs = record.all_jobs
        steps.append(f"cancel {len(jobs)} job(s) {where}: {shlex.join([*record.cancel_command, *jobs])}")
    else:
        steps.append("cancel no job (it records none)")
    if record.worker_files:
        steps.append(f"remove the files the jobs read {where}: {' '.join(sorted(record.worker_files.values()))}")
    steps.append(f"remove its record {record.path}")
    return f"{record.id}: would " + "; ".join(steps)


def cleanup(args) -> int:
    records = read_records()
    failed = 0
    for path, reason in records.unreadable:
        if not args.ids or path.stem in args.ids:
            failed += 1
            print(f"{path.stem}: cannot clean up: {unreadable(path, reason)}", file=sys.stderr)
    known = {record.id for record in records.found} | {path.stem for path, _ in records.unreadable}
    for record_id in [record_id for record_id in args.ids if record_id not in known]:
        failed += 1
        print(f"{record_id}: no such record in {records_dir()} (jqref list shows them)", file=sys.stderr)
    for record in records.found:
        if args.ids and record.id not in args.ids:
            continue
        if not (args.all or (record.orphaned and (record.session is None or record.id in args.ids))):
            if record.id in args.ids:
                failed += 1
                print(
                    f"{record.id}: left alone: its process {record.pid}@{record.host} still runs, or runs on "
                    "another host (--all cleans it up anyway)",
                    file=sys.stderr,
                )
            elif args.dry_run and record.session is not None and record.orphaned:
                print(f"{record.id}: left alone: a detached session one can attach to (name it to clean it up)")
            continue
        if args.dry_run:
            print(planned_cleanup(record))
            continue
        try:
            outcome = record.cancel_jobs()
        except (CommandError, OSError) as e:
            outcome = CancelOutcome(errors=[str(e)])
        notes = "".join(f"; {note}" for note in outcome.notes)
        if outcome.errors:
            failed += 1
            print(f"{record.id}: could not cancel: {'; '.join(outcome.errors)}{notes}", file=sys.stderr)
        else:
            print(f"{record.id}: cancelled {len(record.all_jobs)} job(s): {' '.join(record.all_jobs) or '-'}{notes}")
            record.remove()
    for path in records.abandoned_partials:
        if args.dry_run:
            print(f"would remove {path}: a record whose writing never finished")
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        print(f"removed {path}: a record whose writing never finished")
    if args.dry_run:
        print("dry run: nothing was cancelled, stopped or removed")
    return 1 if failed else 0


LIST_DESCRIPTION = """\
Show every cluster jqref recorded in the records directory ($XDG_STATE_HOME/jqref,
default ~/.local/state/jqref): its job class, the process and host that own it,
whether that process is gone (its jobs are then orphaned), and its job ids;
detached sessions with the attach call that takes them over. Records that
cannot be read, and records whose writing never finished, are listed as such."""

STATUS_DESCRIPTION = """\
Show recorded clusters in detail: each job's id and worker name, where its
batch commands run (this machine, or the SSH destination) and the cancel
command, when the record was last written, whether the process that owns it
runs, and for a detached session when it started, the state directory of its
scheduler and how to attach to it. Reads the records only: no batch or SSH
command is run. Exits 1 if a record named does not exist or cannot be read."""

CLEANUP_DESCRIPTION = """\
Cancel the jobs of recorded clusters whose process is gone (a crashed or killed
client), with the batch system and runner (local or SSH) the cluster used;
remove the files their jobs read (the workers' TLS credentials, jqref's
preloads) and their records; and remove records whose writing never finished. Naming IDs limits it to those.
A detached session is cleaned up only when named (or with --all), and its
scheduler on the login node is stopped too. A cluster whose process still
runs, or runs on another host, is left alone unless --all is given.

Exits 1 if a job could not be cancelled, or a record named (or, naming none,
any record) cannot be read, does not exist, or was left alone because its
process runs. --dry-run says what would be done and changes nothing."""


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="jqref",
        description="See the Dask clusters jqref recorded on this machine, and cancel the batch jobs "
        "that crashed clients left behind.",
        epilog="jqref COMMAND --help describes each command. Records live in $XDG_STATE_HOME/jqref "
        f"(here: {records_dir()}).",
    )
    command.add_argument(
        "--version",
        action=VersionAction,
        help="print jqref's version and the Python and distributed it runs with, then exit",
    )
    commands = command.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter
    commands.add_parser(
        "list", help="show recorded clusters and their jobs", description=LIST_DESCRIPTION, formatter_class=formatter
    ).set_defaults(run=list_records)
    show = commands.add_parser(
        "status",
        help="show recorded clusters in detail: jobs, worker names, state",
        description=STATUS_DESCRIPTION,
        formatter_class=formatter,
    )
    show.add_argument("ids", nargs="*", metavar="ID", help="records to show (default: all; jqref list shows the ids)")
    show.set_defaults(run=status)
    clean = commands.add_parser(
        "cleanup",
        help="cancel the jobs of clusters whose client is gone",
        description=CLEANUP_DESCRIPTION,
        formatter_class=formatter,
    )
    clean.add_argument("ids", nargs="*", metavar="ID", help="records to clean up (default: every orphaned one)")
    clean.add_argument("--all", action="store_true", help="also clusters whose process still runs, or runs elsewhere")
    clean.add_argument(
        "-n",
        "--dry-run",
        action="store_true",
        help="say what would be cancelled, stopped and removed, and change nothing",
    )
    clean.set_defaults(run=cleanup)
    return command


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


@click.command(
    name="jqref", add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dask_cli(args) -> None:
    """jqref's commands as `dask jqref ...` (list, status, cleanup; --help for more). Being
    found by `dask` also registers jqref's defaults: `dask config get jqref.slurm` shows them."""
    sys.exit(main(list(args)))


if __name__ == "__main__":
    sys.exit(main())
