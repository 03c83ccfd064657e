"""How long `close()` takes with running workers, on a testbed's login node.

Run there (`make bench-close` does: it brings the SLURM testbed up and runs
this in the login container as the user dask, the local mode). Each round
starts `--jobs` one-worker jobs, waits until the workers have connected and,
after `--settle` seconds, until a poll has seen the jobs running (so that
`close()` takes its two-step path: SIGTERM to the workers, then the cancel
only for what is still there), then times `client.close(); cluster.close()`
and checks with `squeue` that no job is left. Prints one JSON line per round
and a summary with the machine and its load; with `--out FILE`, also writes
the rounds and the summary to FILE, once every round has run (to a temporary
name, then renamed), so a run that fails half way leaves FILE as it was.
The integration suite runs one round of it (tests/integration/test_benchmarks_smoke.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from bench_slurm import write_atomically  # this folder is on the path: the script's own
from distributed import Client

from jqref import SLURMCluster


def one_round(jobs: int, settle: float, python: str) -> dict:
    cluster = SLURMCluster(
        cores=1,
        memory="512MiB",
        processes=1,
        python=python,
        poll_interval="1s",
        scheduler_options={"dashboard_address": ":0"},
    )
    client = Client(cluster)
    cluster.scale(jobs=jobs)
    client.wait_for_workers(jobs, timeout=180)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    client.close()
    cluster.close()
    took = time.monotonic() - started
    left = subprocess.run(
        ["squeue", "--noheader", "--format=%i", f"--name={cluster.job_name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {"close_s": round(took, 3), "jobs": jobs, "left_in_queue": len(left)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between the workers' arrival and close()")
    parser.add_argument("--python", default=sys.executable, help="the compute nodes' interpreter")
    parser.add_argument("--out", help="also write the rounds and the summary to this JSON file, once all have run")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rounds = []
    for _ in range(args.rounds):
        rounds.append(one_round(args.jobs, args.settle, args.python))
        print(json.dumps(rounds[-1]), flush=True)
    times = [r["close_s"] for r in rounds]
    summary = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "close_s": {"min": min(times), "median": statistics.median(times), "max": max(times)},
        "left_in_queue": sum(r["left_in_queue"] for r in rounds),
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        write_atomically(args.out, json.dumps({"rounds": rounds, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
