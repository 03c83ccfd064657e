"""The benchmarks cannot rot unnoticed: each module in benchmarks/ is imported
and its helpers called, and each measurement that needs no testbed is run
once, small, against a stand-in SLURM (tests/unit/stand_in_slurm.py, which
queues jobs and never runs them) or a batch system that answers at once. An
API change in jqref that breaks a benchmark fails `make unit`, not the next
`make bench-slurm` half an hour in. No figure is asserted: only that each
measurement runs and reports.

bench_slurm.py's own rule is tested here too: results/ is written only by a
run that completed, so a crash cannot overwrite tracked results with a part.
"""

import asyncio
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

import stand_in_slurm

REPO = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
STAND_IN = REPO / "tests" / "unit" / "stand_in_slurm.py"
#: results/ files written by bench_slurm.py (the others come from measure.py subcommands run by hand).
BENCH_SLURM_RESULTS = ["slurm", "slurm-scale", "slurm-scale-64", "slurm-version-check"]


def load(name):
    if str(BENCHMARKS) not in sys.path:  # as when run as a script: its own folder is on the path
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measure():
    return load("measure")


@pytest.fixture(scope="module")
def bench():
    return load("bench_slurm")


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_module_imports(name):
    source = (BENCHMARKS / f"{name}.py").read_text()
    compile(source, f"benchmarks/{name}.py", "exec")
    if name == "plot" and importlib.util.find_spec("matplotlib") is None:
        return  # its own venv has matplotlib (build/bench-venv); compiled is what can be checked here
    load(name)


# ---- measure.py: helpers --------------------------------------------------------------


def test_the_startup_cases_run_this_interpreter(measure):
    cases = measure.startup_cases(sys.executable)
    assert all(argv[0] == sys.executable for argv in cases.values())


def test_the_floor_script_is_a_valid_script_of_the_shape(measure):
    script = measure.floor_script(measure.SHAPES[8], "bfloor8", "/stamps/x", "tcp://10.0.0.1:8786", nanny=False)
    assert "#SBATCH --mem=1024M" in script and "#SBATCH --cpus-per-task=1" in script
    assert (
        f"exec {measure.PYTHON} -m distributed.cli.dask_worker tcp://10.0.0.1:8786 --nthreads 1 "
        f"--memory-limit {2**29} --nworkers 2 --no-nanny --death-timeout 30"
    ) in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


def test_the_counting_runner_counts_commands_and_leaves_the_rest_to_the_runner(measure, tmp_path, monkeypatch):
    from jqref import LocalRunner

    monkeypatch.setenv("HOME", str(tmp_path))
    counting = measure.CountingRunner(LocalRunner())
    assert asyncio.run(counting.run(["true"])).ok and counting.run_blocking(["true"]).ok
    paths = asyncio.run(counting.write_private_files("creds", {"key": "k"}, private_directory=True))
    assert pathlib.Path(paths["key"]).read_text() == "k"
    assert counting.count() == {"true": 2}
    assert measure.CountingRunner.label(["squeue", "--name=x"]) == "squeue (find by tag)"
    assert measure.job_of("SLURMCluster-3-1", processes=2) == "SLURMCluster-3"


@pytest.mark.parametrize("contender", ["jqref-local", "jqref-noarray"])
def test_each_jqref_contender_is_made_with_the_benchmarks_options(measure, contender, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    runner = measure.instant_runner(lambda argv: "")
    cluster = measure.make_cluster(contender, measure.SHAPES[8], "bjob", "/stamps/bjob", runner, None, 5.0)
    try:
        script = cluster.job_script()
        assert (
            "#SBATCH --cpus-per-task=1" in script and measure.stamp_line("/stamps/bjob", measure.JQREF_JOB_ID) in script
        )
    finally:
        cluster.close()


# ---- measure.py: each measurement once, small -----------------------------------------

#: Each measure.py run that needs no testbed: the figures are not looked at.
SMOKE = {
    **{
        f"workers {c}": ["workers", "--contender", c, "--n", "1", "--poll-interval", "0.5"]
        for c in ("floor", "floor-nonanny", "jqref-local", "jqref-noarray", "djq")
    },
    **{
        f"queue {c}": [
            "queue",
            "--contender",
            c,
            "--k",
            "2",
            "--repeat",
            "1",
            "--window",
            "0.5",
            "--poll-interval",
            "0.2",
        ]
        for c in ("jqref-local", "jqref-noarray", "djq")
    },
    **{f"overhead {c}": ["overhead", "--contender", c, "--k", "3", "--repeat", "1"] for c in ("jqref-local", "djq")},
    "poll": ["poll", "--n", "10", "--repeat", "1"],
    "startup": ["startup", "--repeat", "1", "--python", sys.executable],
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every SMOKE run at once (they share nothing but the stand-in's locked
    queue): a dict of each one's output, and the directories they used."""
    root = tmp_path_factory.mktemp("bench-smoke")
    bin_dir = root / "bin"
    stand_in_slurm.install(bin_dir)
    (root / "stand-in").mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STAND_IN_DIR": str(root / "stand-in"),
        "HOME": str(root / "home"),
        "XDG_STATE_HOME": str(root / "state"),
        "BENCH_DIR": str(root / "bench"),
        "BENCH_DEADLINE": "1",
    }
    (root / "home").mkdir()
    started = time.monotonic()
    runs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCHMARKS / "measure.py"), *argv],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
        )
        for name, argv in SMOKE.items()
    }
    done = {}
    for name, process in runs.items():
        stdout, stderr = process.communicate(timeout=max(10, 180 - (time.monotonic() - started)))
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done, root


@pytest.mark.parametrize("name", list(SMOKE))
def test_each_measurement_runs_and_reports(smoke, bench, name):
    done, _ = smoke
    result = done[name]
    assert result.returncode == 0, result.stderr[-3000:]
    reported = bench.bench_json(result)  # how bench_slurm.py reads it
    rows = reported if isinstance(reported, list) else [reported]
    assert rows and all(rows)
    if name.startswith(("workers", "queue")):
        assert all(row.get("left_behind") == [] and "close_error" not in row and "error" not in row for row in rows), (
            rows
        )


def test_the_measurements_left_nothing_behind(smoke):
    done, root = smoke
    assert all(result.returncode == 0 for result in done.values())
    queue = json.loads((root / "stand-in" / "queue.json").read_text())["jobs"]
    assert queue and {job["state"] for job in queue.values()} == {"CANCELLED"}, queue
    assert not list((root / "state").glob("jqref/*")), "a cluster's record was left"
    assert not list((root / "home").glob(".jqref/credentials/*")), "the workers' credentials were left"


# ---- bench_slurm.py -------------------------------------------------------------------


@pytest.mark.parametrize("name", BENCH_SLURM_RESULTS)
def test_each_tracked_result_renders_and_is_whole(bench, name):
    data = json.loads((BENCHMARKS / "results" / f"{name}.json").read_text())
    report = bench.render_report(data, f"/r/{name}.md", f"{name}-time-to-workers.png")
    assert report.startswith("# SLURM benchmark results") and "Whole benchmark run:" in report
    contenders = sorted({m["contender"] for m in data["workers"]})
    assert bench.missing_results(data, contenders, data["config"]["n"], only_workers="startup" not in data) == []


def test_an_atomic_write_that_fails_leaves_the_file_as_it_was(bench, tmp_path):
    path = tmp_path / "slurm.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        bench.write_atomically(str(path), object())
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["slurm.json"]
    bench.write_atomically(str(path), "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["slurm.json"]


@pytest.fixture
def offline_run(bench, tmp_path, monkeypatch):
    """bench_slurm.main with every step that needs a testbed replaced by the
    tracked results' figures; results/ and build/bench-partial/ in tmp_path.
    Returns the tracked data, the results directory and the plots made."""
    tracked = json.loads((BENCHMARKS / "results" / "slurm.json").read_text())
    results, plots = tmp_path / "results", []
    results.mkdir()
    monkeypatch.setattr(bench, "RESULTS", str(results))
    monkeypatch.setattr(bench, "PARTIAL", str(tmp_path / "partial"))
    monkeypatch.setattr(bench, "machine", lambda: dict(tracked["machine"]))
    monkeypatch.setattr(bench, "testbed", lambda *args, **kw: None)
    monkeypatch.setattr(bench, "versions_in_image", lambda: tracked["versions"])
    monkeypatch.setattr(bench, "install_djq", lambda: None)
    monkeypatch.setattr(bench, "startup_components", lambda: tracked["startup"])
    monkeypatch.setattr(bench, "ssh_round_trips", lambda: tracked["rtt"])
    monkeypatch.setattr(bench, "rounds", lambda n_rounds, ns, everyone: tracked["workers"])
    monkeypatch.setattr(bench, "queue_commands", lambda *args, **kw: tracked["queue"])
    monkeypatch.setattr(bench, "client_overhead", lambda: tracked["overhead"])
    monkeypatch.setattr(bench, "plot", lambda json_path, png: plots.append((json_path, png)))
    (results / "slurm.json").write_text('{"the": "tracked result"}')
    return tracked, results, plots


def test_a_completed_run_writes_its_results(bench, offline_run):
    tracked, results, plots = offline_run
    bench.main(["--up-runs", "0"])
    written = json.loads((results / "slurm.json").read_text())
    assert written["workers"] == tracked["workers"] and written["queue"] == tracked["queue"]
    assert (results / "slurm.md").read_text().startswith("# SLURM benchmark results")
    assert plots == [(str(results / "slurm.json"), str(results / "slurm-time-to-workers.png"))]


def test_a_run_that_crashes_leaves_the_results_and_keeps_what_it_measured(bench, offline_run, tmp_path, monkeypatch):
    _, results, plots = offline_run

    def crash():
        raise RuntimeError("no result in the output")

    monkeypatch.setattr(bench, "startup_components", crash)
    with pytest.raises(RuntimeError, match="no result in the output"):
        bench.main(["--up-runs", "0"])
    assert (results / "slurm.json").read_text() == '{"the": "tracked result"}'
    assert sorted(os.listdir(results)) == ["slurm.json"] and plots == []
    kept = json.loads((tmp_path / "partial" / "slurm.json").read_text())
    assert "versions" in kept and "startup" not in kept


def test_a_run_where_a_contender_never_measured_is_not_published(bench, offline_run, tmp_path, monkeypatch):
    tracked, results, plots = offline_run
    without_djq = [m for m in tracked["workers"] if m["contender"] != "djq"]
    monkeypatch.setattr(bench, "rounds", lambda n_rounds, ns, everyone: without_djq)
    with pytest.raises(SystemExit, match=r"incomplete run \(djq N=1: no successful measurement; djq N=4"):
        bench.main(["--up-runs", "0"])
    assert (results / "slurm.json").read_text() == '{"the": "tracked result"}' and plots == []
    assert json.loads((tmp_path / "partial" / "slurm.json").read_text())["workers"] == without_djq


# ---- tls_nanny_repro.py ---------------------------------------------------------------


def test_the_tls_repro_prepares_its_files_with_jqrefs_fix(tmp_path):
    from jqref import ssl_error_queue

    repro = load("tls_nanny_repro")
    configs, preloads = repro.prepare(tmp_path, detect=True)
    assert set(configs) == {"off", "fix"} and all((folder / "repro.yaml").exists() for folder in configs.values())
    assert (tmp_path / "fix.py").read_text() == ssl_error_queue.preload_source()
    assert preloads == [repro.DETECTOR, ssl_error_queue.preload_source()]
