"""The testbeds for other projects: `scripts/testbed.sh run` (`make run-<s>`)
installs an outside project's wheels into an environment of its own on the
shared home, puts its tree there and runs its suite in a login session, here
`tests/outside/batchprobe`, a client written against the batch commands only,
with an older `packaging` pinned, as projects pin what the nodes' Python has."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.host]
PROBE = ROOT / "tests" / "outside" / "batchprobe"


#: Older than the lock's, from PyPI: what the outside project pins.
OLDER_PACKAGING = "24.2"
SUBMITIT = "submitit==1.5.4"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]


def run_project(testbed_up, scheduler_name, isolated, tree, wheels, cmd) -> str:
    """`scripts/testbed.sh run` as a project's maintainer calls it; its output,
    once it has exited 0."""
    env = {
        **os.environ,
        "TESTBED_PROJECT": testbed_up.project,
        "ISOLATED": "1" if isolated else "0",
        "WHEELS": str(wheels),
        "TREE": str(tree),
        "CMD": cmd,
    }
    done = subprocess.run(
        [str(ROOT / "scripts" / "testbed.sh"), "run", scheduler_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_another_projects_suite_runs_in_a_login_session_and_its_pins_stay_its_own(
    testbed_up, scheduler_name, isolated, tmp_path
):
    tree, wheels = tmp_path / "batchprobe", tmp_path / "wheels"
    shutil.copytree(PROBE, tree)  # building writes into the tree
    subprocess.run([*PIP, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(tree)], check=True)
    subprocess.run([*PIP, "download", "--no-deps", "-d", str(wheels), f"packaging=={OLDER_PACKAGING}"], check=True)
    cmd = (
        "python -c \"import os, packaging; print('login', os.getlogin(), 'packaging', packaging.__version__)\""
        " && python -m pytest -v -p no:cacheprovider --color=no"
    )
    out = run_project(testbed_up, scheduler_name, isolated, PROBE, wheels, cmd)
    assert f"login dask packaging {OLDER_PACKAGING}" in out, out
    assert "test_a_job_imports_this_package_on_a_compute_node PASSED" in out, out
    # The nodes' own environment, which jqref's suite runs in, is as the lock made it.
    nodes_python = ("/opt/jqref/bin/python", "-c")
    _, out, _ = testbed_up.exec("compute1", *nodes_python, "import packaging; print(packaging.__version__)")
    assert out.strip() == importlib.metadata.version("packaging")
    code, _, err = testbed_up.exec("compute1", *nodes_python, "import batchprobe", check=False)
    assert code != 0 and "No module named 'batchprobe'" in err


@pytest.mark.schedulers("slurm")  # submitit drives Slurm only
def test_submitit_reads_job_states_from_the_testbeds_accounting(testbed_up, scheduler_name, isolated, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([*PIP, "download", "--no-deps", "-d", str(wheels), SUBMITIT, "typing_extensions"], check=True)
    tree = ROOT / "tests" / "outside" / "submitit_probe"
    out = run_project(testbed_up, scheduler_name, isolated, tree, wheels, "python states.py")
    for line in ("result 1024, state COMPLETED", "array [1, 4, 9], states ['COMPLETED']", "cancelled, state CANCELLED"):
        assert line in out, out


@pytest.mark.schedulers("slurm")  # the runner test of dask-jobqueue's own suite runs under srun
def test_dask_jobqueues_own_runner_test_passes_against_jqref(testbed_up, scheduler_name, isolated, tmp_path):
    """dask-jobqueue's `test_slurm_runner`, from its wheel, as its CI runs it
    (`-E slurm`): `srun -n 4` of its script, which imports
    `dask_jobqueue.slurm.SLURMRunner`, here jqref's through the re-export shim."""
    wheels, tree = tmp_path / "wheels", tmp_path / "dask-jobqueue-runner"
    tree.mkdir()
    version = importlib.metadata.version("dask-jobqueue")
    subprocess.run([*PIP, "download", "--no-deps", "-d", str(wheels), f"dask-jobqueue=={version}"], check=True)
    tests = "$(python -c 'import dask_jobqueue.tests as t; print(t.__path__[0])')"
    cmd = (
        f"PYTHONPATH=/src:/src/tests/dask_jobqueue_suite python -m pytest -p jqref_suite {tests} "
        "-E slurm -k test_slurm_runner -v -p no:cacheprovider --color=no"
    )
    out = run_project(testbed_up, scheduler_name, isolated, tree, wheels, cmd)
    assert "test_slurm.py::test_slurm_runner PASSED" in out, out
