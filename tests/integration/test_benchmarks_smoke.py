"""The benchmarks still run: one round of each benchmark entry point on the
SLURM testbed this suite already has up, at its smallest, so that a change
that breaks one fails here and not in the next `make bench-slurm` or `make
bench-close`. No figure is looked at: only that each exits 0 (which for
bench_slurm.py means every step and contender was measured) and wrote its
results, into a temporary directory; benchmarks/results/ is never touched.

tests/unit/test_benchmarks_import.py covers what needs no testbed (imports,
the measurements against a stand-in SLURM). This covers what only a testbed
exercises: the driver end to end, the SSH contender and the SSH round trips,
dask-jobqueue and the floor on real SLURM, the report and the plot, and
close_time.py in the login node as `make bench-close` runs it.

Once per `make test-slurm`: in the SSH mode (host: it drives the testbed
from this machine), not in the isolated run, SLURM only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from .conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.host, pytest.mark.schedulers("slurm")]


def test_bench_close_runs_a_round_in_the_login_node(testbed_up, docker_compose_project_name):
    out = f"/tmp/jqref-bench-close-{uuid.uuid4().hex[:8]}.json"
    # As `make bench-close` runs it, one round instead of five.
    command = f"PYTHONPATH=/src /opt/jqref/bin/python /src/benchmarks/close_time.py --rounds 1 --out {out}"
    done = subprocess.run(
        [str(ROOT / "scripts" / "testbed.sh"), "run", "slurm"],
        env={**os.environ, "CMD": command, "TESTBED_PROJECT": docker_compose_project_name, "ISOLATED": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    found, written, _ = testbed_up.exec("login", "cat", out, check=False)
    testbed_up.exec("login", "rm", "-f", out, check=False)
    assert done.returncode == 0, (
        f"close_time.py exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    assert found == 0, f"close_time.py exited 0 but wrote no {out}"
    result = json.loads(written)
    assert len(result["rounds"]) == 1 and {"close_s", "left_in_queue"} <= set(result["summary"])


#: make bench-slurm, and make bench-scale's steps (its contenders and queue run, one job each instead of 64 and 1000).
@pytest.mark.parametrize(("scale", "name"), [([], "smoke"), (["--scale"], "smoke-scale")], ids=["slurm", "scale"])
def test_bench_slurm_runs_every_step_once(docker_compose_project_name, testbed_up, tmp_path, scale, name):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_slurm.py"),
            "--smoke",
            *scale,
            "--reuse",
            "--results-dir",
            str(tmp_path),
        ],
        env={**os.environ, "TESTBED_PROJECT": docker_compose_project_name},
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, f"bench_slurm.py exited {done.returncode}:\n{done.stderr[-5000:]}"
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [f"{name}-time-to-workers.png", f"{name}.json", f"{name}.md"], written
    data = json.loads((tmp_path / f"{name}.json").read_text())
    steps = ["workers", "queue"] + ([] if scale else ["rtt", "startup", "overhead"])
    assert data["config"]["smoke"] and all(data.get(step) for step in steps), sorted(data)
