"""One adapter per testbed: the batch system's own tools, for the suite's assertions."""

from .base import Testbed
from .htcondor import HTCondor
from .pbs import PBS
from .sge import SGE
from .slurm import Slurm

TESTBEDS: dict[str, type[Testbed]] = {t.name: t for t in (Slurm, SGE, HTCondor, PBS)}
