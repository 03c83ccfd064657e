"""The PBS testbed's compat layer on the real testbed (PBS_FLAVOR=compat):
PBS memory sizes reach Slurm as meant, and `qstat -x` / `qstat -f -F json`
show jobs, finished ones too, as PBS Pro's client does. What the layer is
and is not: docker/pbs/README.md. Skipped on every other testbed."""

from __future__ import annotations

import json
import re
import shlex
import uuid

import pytest

from .conftest import LOGS, wait_for
from .testbeds.pbs import slurm_mib

pytestmark = [pytest.mark.integration, pytest.mark.placement_independent, pytest.mark.schedulers("pbs")]


@pytest.fixture
def compat(testbed):
    if testbed.flavor != "compat":  # known once the testbed answers
        pytest.skip("the compat layer exists on the PBS testbed's compat flavour only (this is OpenPBS)")
    return testbed


def submit(testbed, body: str, *qsub_args: str) -> str:
    """qsub a script holding `body` from the log directory; its job id."""
    path = f"{LOGS}/compat-{uuid.uuid4().hex[:8]}.sh"
    testbed.run("sh", "-c", f"printf '%s' {shlex.quote(body)} > {path}")
    args = " ".join(shlex.quote(a) for a in qsub_args)
    return testbed.run("sh", "-c", f"cd {LOGS} && qsub {args} {path}").strip().split()[-1]


def qstat(testbed, *args: str):
    return testbed.runner.run_blocking(["qstat", *args], timeout=60)


def json_job(testbed, job_id: str, *flags: str) -> dict:
    result = qstat(testbed, "-f", "-F", "json", *flags, job_id)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    report = json.loads(result.stdout)
    assert {"timestamp", "pbs_version", "pbs_server", "Jobs"} <= set(report)
    return report["Jobs"][job_id]


def state_of(testbed, job_id: str) -> str:
    return json_job(testbed, job_id, "-x")["job_state"]


def slurm_memory_mib(testbed, job_id: str) -> float:
    fields = dict(re.findall(r"(\w+)=(\S*)", testbed.run("scontrol", "show", "job", "--oneliner", job_id)))
    return slurm_mib(fields["MinMemoryNode"])


def test_pbs_memory_sizes_reach_slurm_as_bytes_and_units(compat):
    # A bare number is bytes in PBS (PSI/J writes them so); Slurm alone would read megabytes.
    in_script = submit(compat, "#!/bin/bash\n#PBS -l select=1:ncpus=1:mem=104857600\ntrue\n", "-h")
    on_command_line = submit(compat, "#!/bin/bash\ntrue\n", "-h", "-l", "mem=1048576kb")
    in_words = submit(compat, "#!/bin/bash\n#PBS -l mem=16MW\ntrue\n", "-h")
    try:
        assert slurm_memory_mib(compat, in_script) == 100
        assert slurm_memory_mib(compat, on_command_line) == 1024
        assert slurm_memory_mib(compat, in_words) == 128  # words of 8 bytes
        job = json_job(compat, in_script)
        assert job["job_state"] == "H"
        assert job["Resource_List"]["mem"] == "100mb"
    finally:
        compat.run("qdel", in_script, on_command_line, in_words)


def test_a_finished_job_shows_state_f_and_its_exit_status_with_x(compat):
    job_id = submit(compat, "#!/bin/bash\n#PBS -l walltime=00:02:00\nexit 3\n")
    wait_for(lambda: state_of(compat, job_id) == "F", f"job {job_id} to finish")
    job = json_job(compat, job_id, "-x")
    assert job["Exit_status"] == 3
    assert job["queue"] == "workq" and job["Job_Owner"].startswith("dask@")
    # Without -x a finished job is not shown, as PBS Pro says.
    result = qstat(compat, "-f", "-F", "json", job_id)
    assert result.returncode == 35 and "Job has finished, use -x" in result.stderr
    # The other formats with -x, and the record kept for after Slurm forgets the job.
    assert re.search(rf"^{job_id}\s.*\sF workq$", qstat(compat, "-x", job_id).stdout, re.MULTILINE)
    assert "    Exit_status = 3\n" in qstat(compat, "-f", "-x", job_id).stdout
    kept = json.loads(compat.run("cat", f"/var/spool/jqref-pbs/finished/{job_id}.json"))
    assert kept["JOBID"] == job_id and kept["EXITCODE"].startswith("3")
    # qstat without -x or -F is Debian's wrapper, unchanged (jqref parses it): C for completed.
    assert re.search(r"^\s+job_state = C$", compat.run("qstat", "-f", job_id), re.MULTILINE)


def test_a_job_deleted_while_running_reports_exit_status_265(compat):
    job_id = submit(compat, "#!/bin/bash\n#PBS -l walltime=00:05:00\nsleep 300\n")
    try:
        wait_for(lambda: state_of(compat, job_id) == "R", f"job {job_id} to run")
    finally:
        compat.run("qdel", job_id)
    wait_for(lambda: state_of(compat, job_id) == "F", f"job {job_id} to end")
    assert json_job(compat, job_id, "-x")["Exit_status"] == 265


def test_unknown_jobs_and_unimplemented_options_are_errors(compat):
    result = qstat(compat, "-f", "-F", "json", "-x", "999999")
    assert result.returncode == 153 and "Unknown Job Id 999999" in result.stderr
    assert json.loads(result.stdout)["Jobs"] == {}
    result = qstat(compat, "-x", "-n")
    assert result.returncode == 2 and "not implemented by the compat layer" in result.stderr


def test_jobs_find_pbs_variables_and_a_node_file(compat):
    out = f"{LOGS}/compat-env-{uuid.uuid4().hex[:8]}.txt"
    body = (
        "#!/bin/bash\n#PBS -l select=1:ncpus=2:mpiprocs=2\n"
        f'{{ echo "$PBS_JOBID $PBS_JOBNAME $PBS_ENVIRONMENT $PBS_QUEUE"; cat "$PBS_NODEFILE"; }} > {out}\n'
    )
    job_id = submit(compat, body, "-N", "compat-env")
    wait_for(lambda: state_of(compat, job_id) == "F", f"job {job_id} to finish")
    first, *nodes = compat.run("cat", out).splitlines()
    assert first == f"{job_id} compat-env PBS_BATCH workq"
    assert len(nodes) == 2 and len(set(nodes)) == 1 and nodes[0].startswith("compute")  # once per MPI process
