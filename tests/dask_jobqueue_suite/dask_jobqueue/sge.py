"""jqref's SGECluster, SGEJob under dask-jobqueue's module name."""

from jqref.sge import SGECluster, SGEJob  # noqa: F401
