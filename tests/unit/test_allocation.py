"""A whole cluster inside one allocation (`jqref.placement.allocation`).

The launches here are real processes given the environment srun gives its
tasks (SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_ID); the testbed's own srun
runs the same script in tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from distributed import Client

from jqref.placement.allocation import InProcessAllocation, InProcessWorld, Role, check_size, role_of

#: Generous for a loaded 2-core machine: four Python processes start at once.
DEADLINE = 120.0


def test_rank_0_schedules_rank_1_runs_the_block_and_the_rest_are_workers():
    assert [role_of(rank) for rank in range(4)] == [Role.scheduler, Role.client, Role.worker, Role.worker]
    assert role_of(0, client=False) is Role.scheduler and role_of(1, client=False) is Role.worker
    with pytest.raises(ValueError, match=r"2 process\(es\) were launched.*at least 3"):
        check_size(2)


def test_in_one_event_loop_the_block_computes_on_the_workers_once_and_every_rank_ends():
    world = InProcessWorld()
    ran_block = []

    async def rank():
        with contextlib.suppress(SystemExit):
            async with InProcessAllocation(world, asynchronous=True) as allocation:
                async with Client(allocation, asynchronous=True) as client:
                    await client.wait_for_workers(2)
                    ran_block.append(allocation.scheduler_address)
                    assert await client.submit(lambda x: x + 1, 10, workers=[2]).result() == 11
                    assert sorted(
                        client.scheduler_info()["workers"][w]["name"] for w in client.scheduler_info()["workers"]
                    ) == [2, 3]

    async def main():
        await asyncio.wait_for(asyncio.gather(*(rank() for _ in range(4))), DEADLINE)

    asyncio.run(main())
    assert len(ran_block) == 1 and ran_block[0].startswith("tls://"), "TLS by default, the block once"


SCRIPT = """
import sys, time
from distributed import Client
from jqref.slurm import SLURMRunner

options = {"worker_options": {"death_timeout": 5}, "start_timeout": float(sys.argv[2])}
with SLURMRunner(scheduler_file=sys.argv[1], **options) as runner:
    with Client(runner, timeout=5) as client:  # a lost scheduler fails its tasks after 5 s, not 30
        if sys.argv[3] == "at-once":  # as dask-jobqueue's own runner test: no wait for the workers
            print("workers", len(client.scheduler_info()["workers"]), "of", runner.n_workers, flush=True)
        client.wait_for_workers(2)
        print("block", client.submit(lambda x: x + 1, 20, workers=[3]).result(), flush=True)
        if sys.argv[3] == "keep-computing":
            while True:
                client.submit(time.sleep, 0.1, pure=False).result()
"""


def launch(tmp_path, ranks, start_timeout=DEADLINE, mode="once"):
    """The script as srun would start it, one process per rank in `ranks` of 4."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    scheduler_file = tmp_path / "shared" / "scheduler-{job_id}.json"
    processes = {}
    for rank in ranks:
        env = {**os.environ, "SLURM_PROCID": str(rank), "SLURM_NTASKS": "4", "SLURM_JOB_ID": "77"}
        processes[rank] = subprocess.Popen(
            [sys.executable, str(script), str(scheduler_file), str(start_timeout), mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return processes, tmp_path / "shared" / "scheduler-77.json"


def ended(processes, within):
    """Each process's exit status and output, failing if one still runs after `within` seconds."""
    deadline = time.monotonic() + within
    outcomes = {}
    try:
        for rank, process in processes.items():
            out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            outcomes[rank] = (process.returncode, out, err)
    finally:
        for process in processes.values():
            process.kill()
    return outcomes


def test_four_tasks_meet_through_the_scheduler_file_compute_once_and_leave_nothing(tmp_path):
    processes, scheduler_file = launch(tmp_path, range(4))
    outcomes = ended(processes, DEADLINE)
    assert {rank: code for rank, (code, _, _) in outcomes.items()} == dict.fromkeys(range(4), 0), outcomes
    assert outcomes[1][1] == "block 21\n" and all(not outcomes[r][1] for r in (0, 2, 3)), "the block ran once"
    assert not list(scheduler_file.parent.iterdir()), "the scheduler file and its TLS file are removed"


def test_the_block_starts_once_the_launchs_workers_have_joined(tmp_path):
    processes, scheduler_file = launch(tmp_path, range(3), mode="at-once")
    deadline = time.monotonic() + DEADLINE
    while not scheduler_file.exists():
        assert time.monotonic() < deadline, "the scheduler never wrote its file"
        time.sleep(0.1)
    late, _ = launch(tmp_path, [3], mode="at-once")  # the last worker starts after the client found the scheduler
    outcomes = ended({**processes, **late}, DEADLINE)
    assert outcomes[1][1] == "workers 2 of 2\nblock 21\n", outcomes


def test_when_the_scheduler_is_killed_every_other_task_ends_within_a_bounded_time(tmp_path):
    processes, scheduler_file = launch(tmp_path, range(4), mode="keep-computing")
    deadline = time.monotonic() + DEADLINE
    while not (scheduler_file.exists() and processes[1].stdout.readline().startswith("block")):
        assert time.monotonic() < deadline, "the block never computed"
        time.sleep(0.1)
    assert scheduler_file.with_name(scheduler_file.name + ".tls").stat().st_mode & 0o777 == 0o600
    processes[0].send_signal(signal.SIGKILL)
    outcomes = ended({rank: processes[rank] for rank in (1, 2, 3)}, 60)
    assert all(code is not None for code, _, _ in outcomes.values())


def test_without_a_scheduler_the_others_give_up_naming_the_file(tmp_path):
    processes, scheduler_file = launch(tmp_path, (1, 2, 3), start_timeout=3)
    outcomes = ended(processes, 60)
    for code, _, err in outcomes.values():
        assert code != 0 and f"scheduler file {scheduler_file}" in err and "did it start?" in err, err


def test_an_mpi_launch_reads_the_global_rank_and_size_and_refuses_a_launch_too_small(monkeypatch, tmp_path):
    from jqref.placement.allocation import MPIAllocation

    async def rank_and_size(allocation):
        return await allocation.rank(), await allocation.size()

    monkeypatch.setenv("PMI_RANK", "3")
    monkeypatch.setenv("PMI_SIZE", "5")
    monkeypatch.setenv("MPI_LOCALRANKID", "0")  # Intel MPI's rank on the node: not the one
    allocation = MPIAllocation(scheduler_file=tmp_path / "s.json", asynchronous=False)
    try:
        assert asyncio.run(rank_and_size(allocation)) == (3, 5)
    finally:
        allocation._loop_runner.stop()
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(ValueError, match=r"2 process\(es\) were launched"):
        with MPIAllocation(scheduler_file=tmp_path / "s.json"):
            pass
