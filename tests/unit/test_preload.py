"""jqref's code in processes that do not have jqref: files in the jobs, text for a login-node scheduler."""

import asyncio
import multiprocessing
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import pytest
from distributed.preloading import _import_module

from jqref import LocalRunner, SLURMCluster, ssl_error_queue, worker_signals, worker_versions
from jqref.preload import preload_text, scheduler_preloads, worker_preload_args
from jqref.worker_files import WorkerFiles

#: Generous for a loaded machine; the test takes about a second.
DEADLINE = 30.0


def test_the_text_is_one_shell_safe_line_that_distributed_loads_as_the_module():
    text = preload_text(worker_signals)
    assert "\n" not in text and shlex.split(shlex.quote(text)) == [text]
    module = _import_module(text)
    assert module.dask_setup.__code__.co_filename == "jqref/worker_signals.py"


def test_the_first_process_checks_versions_workers_handle_sigterm_and_tls_processes_get_the_fix():
    files = {"worker_versions": "/v.py", "worker_signals": "/s.py"}
    assert worker_preload_args(True, files) == ["--preload-nanny", "/v.py", "--preload", "/s.py"]
    assert worker_preload_args(False, files) == ["--preload", "/v.py", "--preload", "/s.py"]
    tls = {**files, "ssl_error_queue": "/f.py"}
    assert worker_preload_args(True, tls)[4:] == ["--preload", "/f.py", "--preload-nanny", "/f.py"]
    assert worker_preload_args(False, tls)[4:] == ["--preload", "/f.py"]
    assert scheduler_preloads(tls=True) == [preload_text(ssl_error_queue)] and scheduler_preloads(tls=False) == []


def written_files(directory) -> WorkerFiles:
    files = WorkerFiles.for_cluster(None, str(directory))
    asyncio.run(files.write(LocalRunner()))
    return files


def test_the_preload_files_are_the_modules_source_under_importable_names(tmp_path):
    files = written_files(tmp_path)
    assert set(files.preloads) == {"worker_versions", "worker_signals"}
    texts = {name: pathlib.Path(path).read_text() for name, path in files.preloads.items()}
    assert texts["worker_signals"] == pathlib.Path(worker_signals.__file__).read_text()
    versions = pathlib.Path(worker_versions.__file__).read_text()
    filled = f"\nCLIENT_VERSIONS = {worker_versions.here()!r}\n"
    assert texts["worker_versions"] == versions.replace("\nCLIENT_VERSIONS = None\n", filled, 1)
    for path in map(pathlib.Path, files.preloads.values()):
        assert path.stem.isidentifier(), "distributed imports a preload file by its name"
        assert path.stat().st_mode & 0o777 == 0o600


def versions_check_of(directory, client) -> pathlib.Path:
    """The version check as a cluster of a client with versions `client` writes it."""
    path = directory / "jqref_worker_versions_test.py"
    text = pathlib.Path(worker_versions.__file__).read_text()
    path.write_text(text.replace("\nCLIENT_VERSIONS = None\n", f"\nCLIENT_VERSIONS = {client!r}\n", 1))
    return path


@pytest.mark.parametrize("nanny", [True, False])
def test_a_worker_whose_distributed_differs_from_the_clients_stops_at_once_saying_so(tmp_path, nanny):
    """Judged by distributed's own `dask worker`: the job's first process
    loads the check and ends, before connecting, with the reason on stderr."""
    files = {"worker_versions": str(versions_check_of(tmp_path, (worker_versions.here()[0], "1.0")))}
    files["worker_signals"] = worker_signals.__file__
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", "tcp://127.0.0.1:9", "--death-timeout", "30"]
    argv += ["--nanny" if nanny else "--no-nanny", *worker_preload_args(nanny, files)]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE * 2)
    assert done.returncode != 0 and time.monotonic() - started < DEADLINE
    assert "but the client has Python" in done.stderr and "distributed 1.0" in done.stderr, done.stderr


def test_the_version_check_passes_the_clients_own_environment():
    assert worker_versions.mismatch(worker_versions.here()) is None
    assert "Python 2.7" in worker_versions.mismatch(("2.7", worker_versions.here()[1]))


def test_a_clusters_job_script_names_its_files_and_holds_no_encoded_code(tmp_path, monkeypatch):
    """What an administrator reads: shell and paths. The files are there
    while the cluster runs, and gone when it closes."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with SLURMCluster(cores=1, memory="1GiB", scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
        assert "base64" not in script and "exec(" not in script and "python -c" not in script
        words = shlex.split(script.splitlines()[-1])
        named = [pathlib.Path(words[i + 1]) for i, word in enumerate(words) if word.startswith("--preload")]
        assert {path.name.rsplit("_", 1)[0] for path in named} == {
            "jqref_worker_versions",
            "jqref_worker_signals",
            "jqref_ssl_error_queue",
        }
        assert all(path.is_file() for path in named)
        assert "export " not in script
    assert not any(path.exists() for path in named)


def preloads_of(worker_args):
    """The values of the `--preload` options, as `dask worker` reads them."""
    return [value for option, value in zip(worker_args[::2], worker_args[1::2]) if option == "--preload"]


def serve_one_worker(preloads, ready, outcome):
    """A scheduler and one worker loaded with `preloads`, in a process a
    parent started, as a nanny starts its worker; `outcome` gets how the
    worker ended and whether the scheduler still lists it."""
    from distributed import Scheduler, Worker

    async def main():
        async with Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler:
            async with Worker(scheduler.address, nthreads=1, preload=preloads) as worker:
                ready.set()
                await worker.finished()
                deadline = time.monotonic() + DEADLINE
                while scheduler.workers and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                outcome.put((worker.status.name, len(scheduler.workers)))

    asyncio.run(main())


def test_a_worker_process_sent_sigterm_closes_itself_and_leaves_the_scheduler(tmp_path):
    """What the preload promises: scancel signals every process of a job, and
    the worker process closes (telling the scheduler) instead of dying of it."""
    context = multiprocessing.get_context("spawn")
    ready, outcome = context.Event(), context.Queue()
    preloads = preloads_of(worker_preload_args(True, written_files(tmp_path).preloads))
    process = context.Process(target=serve_one_worker, args=(preloads, ready, outcome), daemon=True)
    process.start()
    try:
        assert ready.wait(DEADLINE), "the worker never started"
        os.kill(process.pid, signal.SIGTERM)
        process.join(DEADLINE)
        assert process.exitcode == 0, (
            f"the worker process still runs {DEADLINE:g} s after SIGTERM"
            if process.exitcode is None
            else f"the worker process ended with {process.exitcode} (-15: died of SIGTERM)"
        )
        assert outcome.get(timeout=DEADLINE) == ("closed", 0)
    finally:
        if process.is_alive():
            process.kill()
            process.join(DEADLINE)
