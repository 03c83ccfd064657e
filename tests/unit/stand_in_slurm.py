#!/usr/bin/env python3
"""A stand-in for sbatch, squeue and scancel that misbehaves on request.

Installed on PATH as small executables that name the command they stand
for (see the `stand_in` fixture in test_fault_corpus),
it is run by jqref's real LocalRunner, as the real commands would be. Its
queue is a JSON file in $STAND_IN_DIR; nothing ever runs. Faults are asked
for per command in $STAND_IN_DIR/faults/<command>, one per line, each used by
one call (then the command behaves):

  hang              answer nothing, for ever
  hang-with-child   answer, but leave a child holding the output open
  queue-then-hang   (sbatch) queue the job, then hang before printing its id
  queue-then-garbage (sbatch) queue the job, print no id, exit 0
  empty             exit 0 with no output
  partial           exit 0 with the first line cut short
  denied            exit 1: permission denied
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

COMMANDS = ("sbatch", "squeue", "scancel")


def install(bin_dir: pathlib.Path) -> None:
    """Put the stand-in's commands in `bin_dir`, for a PATH that starts there."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for command in COMMANDS:
        executable = bin_dir / command
        executable.write_text(f'#!/bin/sh\nexec {sys.executable} {pathlib.Path(__file__).resolve()} {command} "$@"\n')
        executable.chmod(0o755)


def state() -> pathlib.Path:
    return pathlib.Path(os.environ["STAND_IN_DIR"])


@contextlib.contextmanager
def queue():
    """The queue, read and written back under a lock."""
    path = state() / "queue.json"
    with open(state() / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jobs = json.loads(path.read_text()) if path.exists() else {"next": 100, "jobs": {}}
        yield jobs
        path.write_text(json.dumps(jobs))


def next_fault(command: str) -> str:
    path = state() / "faults" / command
    if not path.exists():
        return ""
    with open(state() / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        first, *rest = path.read_text().splitlines() or [""]
        path.write_text("".join(f"{line}\n" for line in rest))
    return first.strip()


def option(words: list[str], short: str, long: str) -> str | None:
    for i, word in enumerate(words):
        if word in (short, long) and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(long + "="):
            return word.partition("=")[2]
    return None


def sbatch(args: list[str], fault: str) -> str:
    script = pathlib.Path(args[-1]).read_text() if args and not args[-1].startswith("-") else sys.stdin.read()
    words = args + [word for line in script.splitlines() if line.startswith("#SBATCH") for word in line.split()[1:]]
    array = option(words, "-a", "--array")
    with queue() as q:
        job_id = str(q["next"])
        q["next"] += 1
        if array:
            first, _, last = array.partition("-")
            elements = [f"{job_id}_{i}" for i in range(int(first), int(last or first) + 1)]
        else:
            elements = [job_id]
        for element in elements:
            q["jobs"][element] = {
                "array": job_id,
                "name": option(words, "-J", "--job-name"),
                "comment": option(words, "", "--comment"),
                "state": "PENDING",
                "reason": "Priority",
            }
    if fault == "queue-then-hang":
        signal.pause()  # hangs until killed, as the command it stands for would
    if fault == "queue-then-garbage":
        return "sbatch: warning: the submission was throttled\n"
    return f"{job_id}\n"


def squeue(args: list[str]) -> str:
    with queue() as q:
        jobs = q["jobs"]
    if name := option(args, "", "--name"):
        return "".join(f"{job['array']} {job['comment']}\n" for job in jobs.values() if job["name"] == name)
    wanted = (option(args, "-j", "--jobs") or "").split(",")
    # --format=%i %T %r: the reason last, as squeue prints "None" for a job it has none for.
    return "".join(
        f"{job_id} {jobs[job_id]['state']} {jobs[job_id].get('reason', 'None')}\n"
        for job_id in wanted
        if job_id in jobs
    )


def scancel(args: list[str]) -> str:
    with queue() as q:
        for job_id in [arg for arg in args if not arg.startswith("-")]:
            for element, job in q["jobs"].items():
                if job_id in (element, job["array"]):
                    job["state"] = "CANCELLED"
    return ""


def main() -> None:
    command, args = sys.argv[1], sys.argv[2:]
    fault = next_fault(command)
    if fault == "hang":
        signal.pause()  # hangs until killed, as the command it stands for would
    if fault == "denied":
        sys.exit(f"{command}: error: Access/permission denied")
    if fault == "hang-with-child":
        child = subprocess.Popen(["sleep", "3600"])  # inherits stdout and stderr
        (state() / "children").open("a").write(f"{child.pid}\n")
    out = {"sbatch": lambda: sbatch(args, fault), "squeue": lambda: squeue(args), "scancel": lambda: scancel(args)}
    answer = out[command]()
    if fault == "empty":
        answer = ""
    if fault == "partial":
        answer = re.sub(r" \S+\n.*", "", answer, count=1, flags=re.S)
    sys.stdout.write(answer)


if __name__ == "__main__":
    main()
