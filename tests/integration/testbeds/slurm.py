"""The SLURM testbed: squeue, scancel, scontrol."""

import re

from jqref import SLURMCluster

from .base import Testbed, seconds

# slurmctld is the login container's main process: stopping it would end the
# container (and the SSH server in it). So the controller is frozen instead,
# which makes every command time out (Slurm's MessageTimeout) as a stopped
# one would, and then restarted in place: since Slurm 23.11 `scontrol
# reconfigure` makes slurmctld execute itself anew and recover its state from
# the state save files, as a restart does.
STOP_SLURMCTLD = 'kill -STOP "$(cat /run/slurmctld.pid)"'
START_SLURMCTLD = 'kill -CONT "$(cat /run/slurmctld.pid)" && scontrol reconfigure'
#: sinfo's node states that take jobs.
IN_SERVICE = {"idle", "mix", "alloc"}
#: sacct's states of a job that has ended.
ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}


def slurm_node_in_service(testbed: Testbed, node: str) -> bool:
    return testbed.run("sinfo", "--noheader", "--Node", "--format=%t", f"--nodes={node}").strip() in IN_SERVICE


class Slurm(Testbed):
    name = "slurm"
    cluster_cls = SLURMCluster
    queue = "debug"
    unknown_queue_error = "invalid partition"
    cpus_per_node = 4  # docker/slurm/slurm.conf

    def active_jobs(self, job_name):
        out = self.run(
            "squeue",
            "--noheader",
            "--array",
            "--format=%i",
            f"--name={job_name}",
            "--states=PENDING,RUNNING,CONFIGURING,COMPLETING",
        )
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

    def stop_controller(self):
        self.in_login(STOP_SLURMCTLD)

    def start_controller(self):
        self.in_login(START_SLURMCTLD)

    def node_in_service(self, node):
        return slurm_node_in_service(self, node)

    def final_state(self, job_id):
        out = self.run("sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}", "--format=State")
        state = out.split()[0] if out.split() else None  # "CANCELLED by 1000": the state is the first word
        return state if state in ENDED else None

    def submit_script(self, path, job_name):
        out = self.run(
            "sbatch", "--parsable", f"--job-name={job_name}", f"--partition={self.queue}", "--output=/dev/null", path
        )
        return out.strip().split(";")[0]  # <id>[;<cluster>]
