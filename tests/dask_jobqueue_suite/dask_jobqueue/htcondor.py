"""jqref's HTCondorCluster, HTCondorJob under dask-jobqueue's module name."""

from jqref.htcondor import HTCondorCluster, HTCondorJob  # noqa: F401
