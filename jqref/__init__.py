"""jqref: Dask clusters whose workers run in batch jobs (SLURM, SGE, HTCondor, PBS),
or in local processes (LocalCluster)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from .batch import BatchQueue, JobCancelError
from .cluster import JobQueueCluster
from .diagnosis import WorkersDidNotArrive
from .htcondor import HTCondorCluster, HTCondorJob
from .job import InlineKeyWarning, Job, JobState
from .local import LocalCluster, LocalJob
from .pbs import PBSCluster, PBSJob
from .placement.allocation import InProcessAllocation, InProcessWorld, MPIAllocation, SLURMAllocation
from .runners import CommandError, CommandResult, ConnectionLost, LocalRunner, Runner
from .sge import SGECluster, SGEJob
from .slurm import SLURMCluster, SLURMJob
from .ssh import SSHRunner
from .ssh_prompts import PromptsUnanswered
from .tls import InsecureSchedulerWarning

try:
    __version__ = _version("jqref")
except PackageNotFoundError:  # a source tree on the path (e.g. PYTHONPATH=/src in the testbeds), not installed
    __version__ = "0+unknown"

__all__ = [
    "BatchQueue",
    "CommandError",
    "CommandResult",
    "ConnectionLost",
    "HTCondorCluster",
    "HTCondorJob",
    "InProcessAllocation",
    "InProcessWorld",
    "InlineKeyWarning",
    "InsecureSchedulerWarning",
    "Job",
    "JobCancelError",
    "JobQueueCluster",
    "JobState",
    "LocalCluster",
    "LocalJob",
    "LocalRunner",
    "MPIAllocation",
    "PBSCluster",
    "PBSJob",
    "PromptsUnanswered",
    "Runner",
    "SGECluster",
    "SGEJob",
    "SLURMAllocation",
    "SLURMCluster",
    "SLURMJob",
    "SSHRunner",
    "WorkersDidNotArrive",
]
