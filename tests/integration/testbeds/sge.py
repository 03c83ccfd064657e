"""The Grid Engine testbed: qstat -xml, qdel."""

import xml.etree.ElementTree as ElementTree

from jqref import SGECluster

from .base import Testbed

# sge_qmaster daemonizes; the login container's main process (the entrypoint)
# checks every few seconds that it runs and exits if not. That watchdog is
# frozen while the qmaster is down, and thawed once a new one answers.
WATCHDOG = '"$(pgrep -P 1 -f entrypoint.sh)"'  # its process group: the script, tail, sleep
STOP_QMASTER = f"""
kill -STOP -- -{WATCHDOG}
qconf -km
for _ in $(seq 120); do pgrep -x sge_qmaster >/dev/null || exit 0; sleep 0.5; done
echo 'sge_qmaster did not stop' >&2; exit 1
"""
START_QMASTER = f"""
/usr/sbin/sge_qmaster
for _ in $(seq 120); do qstat >/dev/null 2>&1 && kill -CONT -- -{WATCHDOG} && exit 0; sleep 0.5; done
echo 'sge_qmaster does not answer' >&2; exit 1
"""


class SGE(Testbed):
    name = "sge"
    cluster_cls = SGECluster
    queue = "all.q"
    unknown_queue_error = "unknown queue"
    hostile_name_suffix = "$(x)`y`;&|"  # Grid Engine refuses whitespace and quotes in names
    job_variable = "JOB_ID"
    # The testbed's parallel environment and per-slot memory, so jobs ask for
    # (and the suite can check) what their workers use; dask-jobqueue's
    # default, neither, is what dask-jobqueue's own live suite runs here.
    cluster_defaults = {"pe": "smp", "memory_resource": "mem_free"}

    def _xml(self, *argv):
        return ElementTree.fromstring(self.run(*argv))

    def active_jobs(self, job_name):
        # -g d: one entry per array element, whose id is <job>.<task>.
        root = self._xml("qstat", "-xml", "-g", "d", "-u", "*")
        return {
            ".".join(filter(None, [e.findtext("JB_job_number"), e.findtext("tasks")]))
            for e in root.iter("job_list")
            if e.findtext("JB_name") == job_name
        }

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

    def stop_controller(self):
        self.in_login(STOP_QMASTER)

    def start_controller(self):
        self.in_login(START_QMASTER)

    def node_in_service(self, node):
        hosts = self.run("qhost", "-h", node).splitlines()
        reports_load = any(line.split()[0] == node and line.split()[6] != "-" for line in hosts[3:])
        queue = self.run("qstat", "-f", "-q", f"{self.queue}@{node}").splitlines()
        states = [line.split()[5] for line in queue if line.startswith(f"{self.queue}@") and len(line.split()) > 5]
        return reports_load and not states

    def final_state(self, job_id):
        result = self.runner.run_blocking(["qacct", "-j", job_id], timeout=60)
        if not result.ok:  # "job id N not found" until qmaster has written the record
            return None
        fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if len(line.split(None, 1)) == 2)
        return f"exit_status {fields['exit_status'].strip()}"

    def submit_script(self, path, job_name):
        return self.run(
            "qsub", "-terse", "-N", job_name, "-q", self.queue, "-S", "/bin/bash", "-j", "y", "-o", "/dev/null", path
        ).strip()
