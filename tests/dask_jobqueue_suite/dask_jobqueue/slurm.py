"""jqref's SLURMCluster, SLURMJob under dask-jobqueue's module name."""

from jqref.slurm import SLURMCluster, SLURMJob  # noqa: F401
