"""The HTCondor testbed: condor_q, condor_rm."""

import json

from jqref import HTCondorCluster

from .base import Testbed

_IN_QUEUE = {1, 2, 5, 6, 7}  # idle, running, held, transferring, suspended


def _classad_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class HTCondor(Testbed):
    name = "htcondor"
    cluster_cls = HTCondorCluster
    queue = None  # HTCondor has no queues
    unknown_queue_error = "HTCondor has no queues"

    def _ads(self, *args):
        out = self.run("condor_q", "-allusers", *args, "-json",
                       "-attributes", "ClusterId,ProcId,JobStatus,JobBatchName,RequestCpus,RequestMemory,AllowedJobDuration")
        return json.loads(out) if out.strip() else []

    def active_jobs(self, job_name):
        ads = self._ads("-constraint", f"JobBatchName == {_classad_string(job_name)}")
        return {f"{ad['ClusterId']}.{ad['ProcId']}" for ad in ads if ad["JobStatus"] in _IN_QUEUE}

    def cancel(self, job_id):
        self.run("condor_rm", job_id)

    def resources(self, job_id):
        (ad,) = self._ads(job_id)
        return {
            "name": ad["JobBatchName"],
            "cores": ad["RequestCpus"],
            "memory_mib": ad["RequestMemory"],
            "queue": None,
            "walltime_s": ad["AllowedJobDuration"],
        }
