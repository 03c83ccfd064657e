"""jqref's code that travels to the jobs as preload text."""

import shlex

from distributed.preloading import _import_module

from jqref import ssl_error_queue, worker_signals
from jqref.preload import preload_text, scheduler_preloads, worker_preload_args


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
