"""The SLURM testbed: squeue, scancel, scontrol."""

import re

from jqref import SLURMCluster

from .base import Testbed, seconds


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
