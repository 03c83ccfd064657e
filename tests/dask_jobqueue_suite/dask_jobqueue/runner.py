"""jqref's whole-cluster-in-one-allocation classes under dask-jobqueue's module and names
(dask-jobqueue calls them runners; jqref's runners run batch commands)."""

from jqref.placement.allocation import Allocation as BaseRunner  # noqa: F401
from jqref.placement.allocation import InProcessAllocation as AsyncRunner  # noqa: F401
from jqref.placement.allocation import InProcessWorld as AsyncCommWorld  # noqa: F401
from jqref.placement.allocation import Role  # noqa: F401
