"""The jqref command: find and cancel jobs that crashed clients left behind.

    jqref list              every recorded cluster, its process and its jobs,
                            and the detached sessions one can attach to
    jqref cleanup [ID...]   cancel the jobs of clusters whose process is gone
                            (only the records named, if any; --all: running ones too);
                            a detached session only when named or with --all,
                            its scheduler stopped too; and remove what writes of
                            records that never finished left

Records that cannot be read are shown as such. cleanup exits non-zero if any
job could not be cancelled, or a record named (or, naming none, any record)
could not be read, does not exist or was left alone because its process runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from .records import CancelOutcome, Records, describe_error, load_records, records_dir
from .runners import CommandError


def read_records() -> Records:
    """The records, or exit saying why their directory cannot be read."""
    try:
        return load_records()
    except OSError as e:
        sys.exit(f"jqref: cannot read the records in {records_dir()}: {describe_error(e)}")


def unreadable(path, reason) -> str:
    return (f"its record {path} cannot be read ({reason}): the jobs it names, if any, must be cancelled by hand, "
            "then the file deleted")


def list_records(_args) -> int:
    records = read_records()
    if not (records.found or records.unreadable or records.abandoned_partials):
        print(f"no clusters recorded in {records_dir()}")
    for record in records.found:
        status = "gone (orphaned jobs)" if record.orphaned else "running or on another host"
        if record.session is not None:
            age = (time.time() - record.session["started"]) / 60
            cluster = record.session["cluster_class"].rpartition(".")[2]
            status = (f"detached session, started {age:.0f} min ago, "
                      f"{'attachable' if record.orphaned else 'attached'}: {cluster}.attach({record.id!r})")
        print(f"{record.id}  {record.job_class.rpartition('.')[2]}  pid {record.pid}@{record.host}: {status}; "
              f"{len(record.jobs)} job(s): {' '.join(record.jobs) or '-'}")
    for path, reason in records.unreadable:
        print(f"{path.stem}  unreadable: {unreadable(path, reason)}")
    for path in records.abandoned_partials:
        print(f"{path}: a record whose writing never finished (jqref cleanup removes it)")
    return 0


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
        if not (args.all or record.orphaned and (record.session is None or record.id in args.ids)):
            if record.id in args.ids:
                failed += 1
                print(f"{record.id}: left alone: its process {record.pid}@{record.host} still runs, or runs on "
                      "another host (--all cleans it up anyway)", file=sys.stderr)
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
            print(f"{record.id}: cancelled {len(record.jobs)} job(s): {' '.join(record.jobs) or '-'}{notes}")
            record.remove()
    for path in records.abandoned_partials:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        print(f"removed {path}: a record whose writing never finished")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="jqref", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show recorded clusters and their jobs").set_defaults(run=list_records)
    clean = commands.add_parser("cleanup", help="cancel the jobs of clusters whose client is gone")
    clean.add_argument("ids", nargs="*", metavar="ID", help="records to clean up (default: every orphaned one)")
    clean.add_argument("--all", action="store_true", help="also clusters whose process still runs, or runs elsewhere")
    clean.set_defaults(run=cleanup)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
