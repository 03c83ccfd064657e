"""jqref: Dask clusters whose workers run in batch jobs (SLURM, SGE, HTCondor, ...)."""

from .batch import BatchQueue, JobCancelError
from .cluster import JobQueueCluster
from .htcondor import HTCondorCluster, HTCondorJob
from .job import Job, JobState
from .runners import CommandError, CommandResult, LocalRunner, Runner
from .sge import SGECluster, SGEJob
from .slurm import SLURMCluster, SLURMJob

__all__ = [
    "BatchQueue",
    "CommandError",
    "CommandResult",
    "HTCondorCluster",
    "HTCondorJob",
    "Job",
    "JobCancelError",
    "JobQueueCluster",
    "JobState",
    "LocalRunner",
    "Runner",
    "SGECluster",
    "SGEJob",
    "SLURMCluster",
    "SLURMJob",
]
