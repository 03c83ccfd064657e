"""The PBS testbed (docker/pbs), either flavour: qstat -f, qdel.

Both flavours answer `qstat -f` in PBS's full format; the compat flavour's
(Debian's Slurm-backed wrapper) omits memory, which is read from Slurm's
`scontrol` there instead. The queue is `workq`: OpenPBS's default queue, and
the name of the Slurm partition in the compat flavour.
"""

import re
import time
import warnings

import pytest

from jqref.pbs import PBSCluster, parse_qstat_full, sequence_number

from .base import Testbed, seconds
from .slurm import START_SLURMCTLD, STOP_SLURMCTLD, slurm_node_in_service

#: Every state but finished (F), completed (C), subjob done (X) and moved (M).
_ACTIVE = set("QWTHRESUB")
#: jqref queues a PBS job as <job name>-<8 hex digits of its tag>.
_TAG_SUFFIX = re.compile(r"-[0-9a-f]{8}$")
_PREFIX = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def pbs_mib(size: str) -> float:
    """MiB in a PBS size: '1024mb', '1gb', '1048576kb' (1024-based; w = 8-byte words)."""
    match = re.fullmatch(r"(\d+)([kmgtp]?)([bw]?)", size.strip().lower())
    if not match:
        raise ValueError(f"not a PBS size: {size!r}")
    number, prefix, unit = match.groups()
    return int(number) * 1024 ** _PREFIX[prefix] * (8 if unit == "w" else 1) / 1024**2


def slurm_mib(size: str) -> float:
    """MiB in a Slurm memory size: '1G', '1024M', '1024' (MiB)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size.strip())
    if not match:
        raise ValueError(f"not a Slurm size: {size!r}")
    number, prefix = match.groups()
    return float(number) * 1024 ** _PREFIX[(prefix or "m").lower()] / 1024**2


COMPAT_NOTE = (
    "PBS testbed, compat flavour: PBS commands from Debian's slurm-wlm-torque over Slurm. "
    "This run tests jqref's PBS job class (directives, qsub/qstat/qdel handling), not a PBS server; "
    "PBS_FLAVOR=openpbs runs the suite against OpenPBS."
)


def cluster_job_name(attributes: dict[str, str]) -> str:
    """The job name the cluster was given, without the tag jqref adds to it."""
    return _TAG_SUFFIX.sub("", attributes.get("Job_Name", "").strip())


class PBS(Testbed):
    name = "pbs"
    cluster_cls = PBSCluster
    queue = "workq"
    # OpenPBS's qsub says "Unknown queue"; the compat wrapper relays sbatch's
    # "invalid partition specified". Either way the failed qsub names it.
    unknown_queue_error = "(?i)unknown queue|invalid partition"
    # PBS job names are letters, digits and . _ + - only (jqref refuses the rest).
    hostile_name_suffix = "+.-_+x"

    def __init__(self, runner):
        super().__init__(runner)
        # OpenPBS's qstat answers --version; the Slurm-backed one does not know it.
        version = runner.run_blocking(["qstat", "--version"], timeout=60)
        self.flavor = "openpbs" if version.ok and "pbs_version" in version.stdout else "compat"
        if self.flavor == "compat":
            warnings.warn(COMPAT_NOTE, stacklevel=2)
        # The Slurm-backed wrapper leaves the job Slurm's environment.
        self.job_variable = "PBS_JOBID" if self.flavor == "openpbs" else "SLURM_JOB_ID"
        # docker/pbs/compat/slurm.conf's nodes have 4 CPUs; OpenPBS's MoMs 2.
        self.cpus_per_node = 4 if self.flavor == "compat" else 2

    def _qstat(self, *job_ids: str) -> dict[str, dict[str, str]]:
        result = self.runner.run_blocking(["qstat", "-f", *job_ids], timeout=60)
        if not result.ok and not (result.returncode == 153 and not result.stderr.strip()):
            result.check()  # the compat qstat exits 153 in silence when there are no jobs
        return parse_qstat_full(result.stdout)

    def active_jobs(self, job_name):
        return {
            job_id
            for job_id, attributes in self._qstat().items()
            if cluster_job_name(attributes) == job_name and attributes.get("job_state", "").strip() in _ACTIVE
        }

    def cancel(self, job_id):
        self.run("qdel", job_id)

    def _job(self, job_id):
        for shown, attributes in self._qstat(job_id).items():
            if sequence_number(shown) == sequence_number(job_id):
                return attributes
        raise AssertionError(f"qstat -f does not show job {job_id}")

    def resources(self, job_id):
        # Read once the job has left the queue for a node: the compat flavour
        # reports a queued job's CPUs before Slurm applies the request.
        deadline = time.monotonic() + 120
        attributes = self._job(job_id)
        while attributes["job_state"].strip() in set("QWTH") and time.monotonic() < deadline:
            time.sleep(1)
            attributes = self._job(job_id)
        if "Resource_List.mem" in attributes:
            memory_mib = pbs_mib(attributes["Resource_List.mem"])
        else:  # compat: the wrapper's qstat -f has no memory line
            fields = dict(re.findall(r"(\w+)=(\S*)", self.run("scontrol", "show", "job", "--oneliner", job_id)))
            memory_mib = slurm_mib(fields["MinMemoryNode"])
        return {
            "name": cluster_job_name(attributes),
            "cores": int(attributes["Resource_List.ncpus"]),
            "memory_mib": memory_mib,
            "queue": attributes["queue"],
            "walltime_s": seconds(attributes["Resource_List.walltime"]),
        }

    def job_log(self, log_directory, job_name, job_id):
        if self.flavor == "openpbs":
            return super().job_log(log_directory, job_name, job_id)
        # The compat qsub overrides #PBS -o/-e with <script name>.o/.e<id> in the submit directory, the home.
        return self.run("sh", "-c", f"cat ~/*.o{sequence_number(job_id)} ~/*.e{sequence_number(job_id)}")

    def _compat_only(self):
        if self.flavor != "compat":
            pytest.skip("controller and node faults are written for the compat flavour (Slurm underneath) only")

    def stop_controller(self):
        self._compat_only()
        self.in_login(STOP_SLURMCTLD)

    def start_controller(self):
        self.in_login(START_SLURMCTLD)

    def node_in_service(self, node):
        self._compat_only()
        return slurm_node_in_service(self, node)

    def kill_node(self, node):
        self._compat_only()
        super().kill_node(node)

    def submit_script(self, path, job_name):
        return self.run("qsub", "-N", job_name, "-q", self.queue, "-j", "oe", "-o", "/dev/null", path).strip()
