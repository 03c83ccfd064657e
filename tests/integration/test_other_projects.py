"""The testbeds for other projects: `scripts/testbed.sh run` (`make run-<s>`)
installs an outside project's wheels on every node, puts its tree on the
shared home and runs its suite there, here `tests/outside/batchprobe`, a
client written against the batch commands only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.host]
PROBE = ROOT / "tests" / "outside" / "batchprobe"


def test_another_projects_suite_runs_in_the_testbed(testbed_up, scheduler_name, isolated, tmp_path):
    tree, wheels = tmp_path / "batchprobe", tmp_path / "wheels"
    shutil.copytree(PROBE, tree)  # building writes into the tree
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(tree)],
        check=True,
    )
    env = {
        **os.environ,
        "TESTBED_PROJECT": testbed_up.project,
        "ISOLATED": "1" if isolated else "0",
        "WHEELS": str(wheels),
        "TREE": str(PROBE),
        "CMD": "python -m pytest -v -p no:cacheprovider",
    }
    done = subprocess.run(
        [str(ROOT / "scripts" / "testbed.sh"), "run", scheduler_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_a_job_imports_this_package_on_a_compute_node PASSED" in done.stdout, done.stdout
    # Installed on the compute nodes too, from the wheel, not found through the tree.
    _, out, _ = testbed_up.exec(
        "compute1", "/opt/jqref/bin/python", "-c", "import batchprobe; print(batchprobe.__file__)"
    )
    assert "site-packages" in out
