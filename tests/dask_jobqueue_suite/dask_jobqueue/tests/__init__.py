"""dask-jobqueue's test modules, as its wheel installs them: imported as
`dask_jobqueue.tests.*`, they find jqref's classes under the names above."""

import importlib.metadata
import runpy

_installed = importlib.metadata.distribution("dask-jobqueue").locate_file("dask_jobqueue/tests")
__path__ = [str(_installed)]
globals().update(
    {
        name: value
        for name, value in runpy.run_path(str(_installed / "__init__.py")).items()
        if not name.startswith("__")
    }
)
