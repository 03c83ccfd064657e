"""jqref's code that travels to the jobs as preload text."""

import shlex

from distributed.preloading import _import_module

from jqref import worker_signals
from jqref.preload import preload_text, worker_preload_args


def test_the_text_is_one_shell_safe_line_that_distributed_loads_as_the_module():
    text = preload_text(worker_signals)
    assert "\n" not in text and shlex.split(shlex.quote(text)) == [text]
    module = _import_module(text)
    assert module.dask_setup.__code__.co_filename == "jqref/worker_signals.py"


def test_worker_processes_get_the_signal_handling_and_nannies_nothing_they_do_not_need():
    assert worker_preload_args(nanny=False) == ["--preload", preload_text(worker_signals)]
    assert worker_preload_args(nanny=True)[:2] == ["--preload", preload_text(worker_signals)]
