"""jqref's code that travels to the jobs as preload text."""

import asyncio
import multiprocessing
import os
import shlex
import signal
import time

from distributed.preloading import _import_module

from jqref import ssl_error_queue, worker_signals
from jqref.preload import preload_text, scheduler_preloads, worker_preload_args

#: Generous for a loaded machine; the test takes about a second.
DEADLINE = 30.0


def test_the_text_is_one_shell_safe_line_that_distributed_loads_as_the_module():
    text = preload_text(worker_signals)
    assert "\n" not in text and shlex.split(shlex.quote(text)) == [text]
    module = _import_module(text)
    assert module.dask_setup.__code__.co_filename == "jqref/worker_signals.py"


def test_worker_processes_get_the_signal_handling_and_tls_processes_the_error_queue_fix():
    signals, fix = preload_text(worker_signals), preload_text(ssl_error_queue)
    assert worker_preload_args(nanny=True, tls=False) == ["--preload", signals]
    assert worker_preload_args(nanny=True, tls=True) == ["--preload", signals, "--preload", fix, "--preload-nanny", fix]
    assert worker_preload_args(nanny=False, tls=True) == ["--preload", signals, "--preload", fix]
    assert scheduler_preloads(tls=True) == [fix] and scheduler_preloads(tls=False) == []


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


def test_a_worker_process_sent_sigterm_closes_itself_and_leaves_the_scheduler():
    """What the preload promises: scancel signals every process of a job, and
    the worker process closes (telling the scheduler) instead of dying of it."""
    context = multiprocessing.get_context("spawn")
    ready, outcome = context.Event(), context.Queue()
    preloads = preloads_of(worker_preload_args(nanny=True, tls=False))
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
