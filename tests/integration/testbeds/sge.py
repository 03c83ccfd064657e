"""The Grid Engine testbed: qstat -xml, qdel."""

import xml.etree.ElementTree as ElementTree

from jqref import SGECluster

from .base import Testbed


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
