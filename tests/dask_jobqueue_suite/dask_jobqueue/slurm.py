"""jqref's SLURMCluster, SLURMJob under dask-jobqueue's module name."""

from jqref.slurm import SLURMCluster, SLURMJob, SLURMRunner  # noqa: F401
