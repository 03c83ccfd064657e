"""The jqref command: find and cancel jobs that crashed clients left behind.

    jqref list              every recorded cluster, its process and its jobs,
                            and the detached sessions one can attach to
    jqref cleanup [ID...]   cancel the jobs of clusters whose process is gone
                            (only the records named, if any; --all: running ones too);
                            a detached session only when named or with --all,
                            its scheduler stopped too
"""

from __future__ import annotations

import argparse
import sys
import time

from .records import load_records, records_dir


def list_records(_args) -> int:
    records = load_records()
    if not records:
        print(f"no clusters recorded in {records_dir()}")
    for record in records:
        status = "gone (orphaned jobs)" if record.orphaned else "running or on another host"
        if record.session is not None:
            age = (time.time() - record.session["started"]) / 60
            cluster = record.session["cluster_class"].rpartition(".")[2]
            status = (f"detached session, started {age:.0f} min ago, "
                      f"{'attachable' if record.orphaned else 'attached'}: {cluster}.attach({record.id!r})")
        print(f"{record.id}  {record.job_class.rpartition('.')[2]}  pid {record.pid}@{record.host}: {status}; "
              f"{len(record.jobs)} job(s): {' '.join(record.jobs) or '-'}")
    return 0


def cleanup(args) -> int:
    failed = 0
    for record in load_records():
        if args.ids and record.id not in args.ids:
            continue
        if not (args.all or record.orphaned and (record.session is None or record.id in args.ids)):
            continue
        errors = record.cancel_jobs()
        if errors:
            failed += 1
            print(f"{record.id}: could not cancel: {'; '.join(errors)}", file=sys.stderr)
        else:
            print(f"{record.id}: cancelled {len(record.jobs)} job(s): {' '.join(record.jobs) or '-'}")
            record.remove()
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
