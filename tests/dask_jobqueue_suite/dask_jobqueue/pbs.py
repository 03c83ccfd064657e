"""jqref's PBSCluster, PBSJob under dask-jobqueue's module name."""

from jqref.pbs import PBSCluster, PBSJob  # noqa: F401
