"""A whole Dask cluster inside one allocation, launched by the testbed's own
srun, or by Open MPI's mpirun inside the Slurm job.

One batch job runs ``srun -n 4`` of a script using `jqref.slurm.SLURMRunner`
(jqref's `SLURMAllocation`), or ``mpirun -n 4`` of the same script using
`jqref.MPIAllocation` (ranks from Open MPI's environment): the ranks meet
through a scheduler file in the shared home. Judged by what the job wrote
(each line the block prints starts with its rank) and what squeue reports.
"""

from __future__ import annotations

import shlex
import textwrap
import uuid

import pytest

from .conftest import LOGS, PATIENCE, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.placement_independent, pytest.mark.schedulers("slurm")]

SCRIPT = """
import os, pathlib, signal, sys, threading, time
from distributed import Client

here, mode, launcher = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if launcher == "srun":
    from jqref.slurm import SLURMRunner as Allocation
    rank, scheduler_file = os.environ["SLURM_PROCID"], here / "scheduler-{job_id}.json"
else:
    from jqref import MPIAllocation as Allocation
    rank, scheduler_file = os.environ["OMPI_COMM_WORLD_RANK"], here / "scheduler.json"
if mode == "kill-scheduler" and rank == "0":
    def die_when_told():
        while not (here / "kill").exists():
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=die_when_told, daemon=True).start()

options = {"worker_options": {"death_timeout": 10}}
with Allocation(scheduler_file=str(scheduler_file), **options) as runner:
    with Client(runner) as client:
        client.wait_for_workers(2)
        hosts = sorted({w["host"] for w in client.scheduler_info()["workers"].values()})
        print(f"{rank}: block", runner.scheduler_address.split(":")[0],
              client.submit(lambda x: x + 1, 20, workers=[3]).result(), len(hosts), flush=True)
        if mode == "kill-scheduler":
            while True:
                client.submit(time.sleep, 0.2, pure=False).result()
"""


#: How each launcher starts the script's 4 processes inside the job. mpirun gets
#: PYTHONPATH for its ranks alone (-x): it starts its daemons with srun, whose
#: steps must not carry it (see `submit`); and no binding to cores, which the
#: testbed's nodes advertise more of than their containers have.
LAUNCHERS = {
    "srun": "PYTHONPATH=/src srun --kill-on-bad-exit=0 -n 4",
    "mpirun": "mpirun -n 4 --bind-to none -x PYTHONPATH=/src",
}


@pytest.fixture(params=sorted(LAUNCHERS))
def launcher(request) -> str:
    return request.param


def submit(testbed, mode: str, launcher: str) -> tuple[str, str]:
    """The script in a directory of its own in the shared home, run by
    `launcher` in one 4-task job; its id and the directory."""
    here = f"{LOGS}/allocation-{uuid.uuid4().hex[:8]}"
    testbed.run("mkdir", "-p", here)
    script = shlex.quote(textwrap.dedent(SCRIPT))
    testbed.run("sh", "-c", f"printf '%s' {script} > {shlex.quote(here)}/script.py")
    python = "/opt/jqref/bin/python3"  # the nodes' environment; jqref from the mounted source tree
    # PYTHONPATH is set for srun, not exported into the batch job (sbatch --export): on this testbed's
    # slurmd 24.11.5 a batch job whose environment holds PYTHONPATH made every srun step in it end
    # the node's slurmd ("fatal: clone: Operation not permitted").
    step = f"{LAUNCHERS[launcher]} {python} {here}/script.py {here} {mode} {launcher}"
    out = testbed.run(
        "sbatch",
        "--parsable",
        "-n",
        "4",
        f"--partition={testbed.queue}",
        f"--output={here}/out.txt",
        f"--chdir={here}",
        "--wrap",
        step,
    )
    return out.strip().split(";")[0], here


def finished(testbed, job_id: str) -> bool:
    return not testbed.run("squeue", "--noheader", f"--jobs={job_id}", "--format=%i").strip()


def output(testbed, here: str) -> str:
    return testbed.run("sh", "-c", f"cat {shlex.quote(here)}/out.txt 2>/dev/null || true")


def test_four_tasks_compute_in_the_block_once_over_tls_and_leave_nothing(testbed, launcher):
    job_id, here = submit(testbed, "once", launcher)
    wait_for(lambda: finished(testbed, job_id), f"job {job_id} to end", timeout=PATIENCE * 2)
    out = output(testbed, here)
    blocks = [line for line in out.splitlines() if "block" in line]
    assert len(blocks) == 1 and blocks[0].startswith("1: block tls 21"), out
    # Each launcher reports a task that failed.
    assert "srun: error" not in out and "non-zero exit code" not in out, out
    assert testbed.run("ls", "-A", here).split() == ["out.txt", "script.py"], "the scheduler and TLS files are removed"


def test_when_rank_0_is_killed_the_other_tasks_end_and_so_does_the_job(testbed):
    # srun's tasks only: mpirun ends every rank itself when one is killed, whatever they run.
    job_id, here = submit(testbed, "kill-scheduler", "srun")
    wait_for(lambda: "block" in output(testbed, here), "the block to compute", timeout=PATIENCE * 2)
    testbed.run("touch", f"{here}/kill")
    # Workers stop after their death_timeout (10 s), the client on its first failed task.
    wait_for(lambda: finished(testbed, job_id), f"job {job_id} to end after its scheduler was killed", timeout=90)
