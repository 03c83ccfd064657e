"""jqref under dask-jobqueue's names, for running dask-jobqueue's own tests.

Re-exports only: no behaviour of dask-jobqueue is translated here, so every
test that passes, passes on jqref as a user would import it. OAR, LSF and
Moab are not schedulers jqref supports; their names exist so that test
modules importing them load, and the tests using them are deselected.
"""

from jqref import HTCondorCluster, JobQueueCluster, LocalCluster, PBSCluster, SGECluster, SLURMCluster

from . import config  # noqa: F401  (dask-jobqueue's package has it)


class _NotJqrefs:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: jqref has no such scheduler")


class OARCluster(_NotJqrefs):
    pass


class LSFCluster(_NotJqrefs):
    pass


class MoabCluster(_NotJqrefs):
    pass


__all__ = [
    "HTCondorCluster",
    "JobQueueCluster",
    "LSFCluster",
    "LocalCluster",
    "MoabCluster",
    "OARCluster",
    "PBSCluster",
    "SGECluster",
    "SLURMCluster",
]
