"""What the suite needs to know about each testbed, beyond jqref itself:
how to list, cancel and inspect jobs with the batch system's own tools.
These go through the same runner as the cluster, so they run wherever the
batch commands run."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

from jqref import SGECluster, SLURMCluster
from jqref.runners import Runner


class Testbed:
    name: str
    cluster_cls: type
    #: A queue/partition that exists, and what the batch system says about one that does not.
    queue: str
    unknown_queue_error: str
    #: Characters a job name may hold here, to build a hostile but valid name.
    hostile_name_suffix = " 'q' $(x) `y`"

    def __init__(self, runner: Runner):
        self.runner = runner

    def run(self, *argv: str) -> str:
        return self.runner.run_blocking(list(argv), timeout=60).check().stdout

    def active_jobs(self, job_name: str) -> set[str]:
        """Ids of the jobs named `job_name` that are pending or running."""
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def resources(self, job_id: str) -> dict:
        """What the batch system granted: name, cores, memory_mib, queue, walltime_s."""
        raise NotImplementedError


def seconds(clock: str) -> int:
    """'1-02:03:04', '02:03:04' or '03:04' to seconds."""
    days, _, clock = clock.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


class Slurm(Testbed):
    name = "slurm"
    cluster_cls = SLURMCluster
    queue = "debug"
    unknown_queue_error = "invalid partition"

    def active_jobs(self, job_name):
        out = self.run("squeue", "--noheader", "--format=%i", f"--name={job_name}", "--states=PENDING,RUNNING,CONFIGURING,COMPLETING")
        return set(out.split())

    def cancel(self, job_id):
        self.run("scancel", job_id)

    def resources(self, job_id):
        out = self.run("scontrol", "show", "job", "--oneliner", job_id)
        fields = dict(re.findall(r"(\w+)=(\S*)", out))
        tres = dict(item.split("=", 1) for item in fields["ReqTRES"].split(",") if "=" in item)
        name = re.search(r"JobName=(.*?) UserId=", out).group(1)
        mem = tres["mem"]
        mem_mib = float(mem[:-1]) * {"M": 1, "G": 1024, "T": 1024 * 1024}[mem[-1]]
        return {
            "name": name,
            "cores": int(fields["NumCPUs"]),
            "memory_mib": mem_mib,
            "queue": fields["Partition"],
            "walltime_s": seconds(fields["TimeLimit"]),
        }


class SGE(Testbed):
    name = "sge"
    cluster_cls = SGECluster
    queue = "all.q"
    unknown_queue_error = "unknown queue"
    hostile_name_suffix = "$(x)`y`;&|"  # Grid Engine refuses whitespace and quotes in names

    def _xml(self, *argv):
        return ElementTree.fromstring(self.run(*argv))

    def active_jobs(self, job_name):
        root = self._xml("qstat", "-xml", "-u", "*")
        return {e.findtext("JB_job_number") for e in root.iter("job_list") if e.findtext("JB_name") == job_name}

    def cancel(self, job_id):
        self.run("qdel", job_id)

    def resources(self, job_id):
        job = self._xml("qstat", "-xml", "-j", job_id).find(".//djob_info/element")
        requests = {e.findtext("CE_name"): e.findtext("CE_stringval") for e in job.iter("qstat_l_requests")}
        slots = int(job.findtext("JB_pe_range/ranges/RN_min"))
        per_slot = requests["mem_free"]
        return {
            "name": job.findtext("JB_job_name"),
            "cores": slots,
            "memory_mib": slots * float(per_slot[:-1]) * {"M": 1, "G": 1024}[per_slot[-1]],
            "queue": job.findtext("JB_hard_queue_list/destin_ident_list/QR_name"),
            "walltime_s": int(requests["h_rt"]),
        }


TESTBEDS = {"slurm": Slurm, "sge": SGE}
