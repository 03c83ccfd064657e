"""A tiny client of whichever batch system is here (sbatch, condor_submit or
qsub), written against the batch commands only: what an outside project's
suite looks like when it runs in a jqref testbed (see the README)."""

from __future__ import annotations

import pathlib
import shlex
import shutil
import socket
import subprocess
import sys


def mark(path: str) -> None:
    """What the job runs on a compute node: say where it ran."""
    pathlib.Path(path).write_text(socket.gethostname() + "\n")


def submit_marker(path: pathlib.Path) -> str:
    """Submit a job that imports this package on a compute node and writes
    `path` (on the shared home); return what the submit command printed."""
    command = shlex.join([sys.executable, "-c", f"import batchprobe; batchprobe.mark({str(path)!r})"])
    script = path.with_suffix(".sh")
    script.write_text(f"#!/bin/sh\nexec {command}\n")
    script.chmod(0o755)
    if shutil.which("sbatch"):
        argv = ["sbatch", f"--output={path}.out", str(script)]
    elif shutil.which("condor_submit"):
        description = path.with_suffix(".sub")
        description.write_text(
            f"executable = {script}\ntransfer_executable = false\n"
            f"should_transfer_files = NO\noutput = {path}.out\nerror = {path}.err\nqueue\n"
        )
        argv = ["condor_submit", str(description)]
    elif shutil.which("qsub"):  # Grid Engine or PBS
        argv = ["qsub", "-o", f"{path}.out", "-e", f"{path}.err", str(script)]
    else:
        raise RuntimeError("no batch system here: none of sbatch, condor_submit, qsub is on PATH")
    return subprocess.run(argv, capture_output=True, text=True, check=True, cwd=path.parent).stdout
