"""jqref's Job, JobQueueCluster under dask-jobqueue's module name."""

from jqref import Job, JobQueueCluster  # noqa: F401
