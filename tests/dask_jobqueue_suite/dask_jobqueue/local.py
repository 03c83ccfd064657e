"""jqref's LocalCluster, LocalJob under dask-jobqueue's module name."""

from jqref.local import LocalCluster, LocalJob  # noqa: F401
