"""The HTCondor testbed: condor_q, condor_rm."""

import json
import shlex
import time

from jqref import HTCondorCluster

from .base import Testbed

_IN_QUEUE = {1, 2, 5, 6, 7}  # idle, running, held, transferring, suspended

# condor_master (the login container's main process) keeps running and
# restarts the daemons it is told to. The schedd goes down fast, as in a
# crash: running jobs keep running and the new schedd reconnects to them.
STOP_DAEMONS = "condor_off -fast -daemon schedd && condor_off -daemon collector"
START_DAEMONS = """
condor_on -daemon collector && condor_on -daemon schedd
for _ in $(seq 120); do condor_q >/dev/null 2>&1 && exit 0; sleep 0.5; done
echo 'the schedd does not answer' >&2; exit 1
"""


def _classad_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class HTCondor(Testbed):
    name = "htcondor"
    cluster_cls = HTCondorCluster
    queue = None  # HTCondor has no queues
    unknown_queue_error = "HTCondor has no queues"
    job_variable = "_CONDOR_SCRATCH_DIR"
    job_variable_is_id = False

    def _ads(self, *args):
        out = self.run(
            "condor_q",
            "-allusers",
            *args,
            "-json",
            "-attributes",
            "ClusterId,ProcId,JobStatus,JobBatchName,JobDescription,AllowedJobDuration",
        )
        return json.loads(out) if out.strip() else []

    def active_jobs(self, job_name):
        # The batch name is the worker's (as in dask-jobqueue); the job name is the description.
        ads = self._ads("-constraint", f"JobDescription == {_classad_string(job_name)}")
        return {f"{ad['ClusterId']}.{ad['ProcId']}" for ad in ads if ad["JobStatus"] in _IN_QUEUE}

    def cancel(self, job_id):
        self.run("condor_rm", job_id)

    def resources(self, job_id):
        (ad,) = self._ads(job_id)
        # The requests are expressions of the job's MY.DaskWorker* ads: -af evaluates them (-json would not).
        cores, memory_mib = self.run("condor_q", "-allusers", job_id, "-af", "RequestCpus", "RequestMemory").split()
        return {
            "name": ad["JobDescription"],
            "cores": int(cores),
            "memory_mib": int(memory_mib),
            "queue": None,
            "walltime_s": ad["AllowedJobDuration"],
        }

    def job_log(self, log_directory, job_name, job_id):
        # Named by job id, as dask-jobqueue names them: worker-<cluster>.<proc>.out and .err.
        stem = f"{shlex.quote(log_directory)}/worker-{shlex.quote(job_id)}"
        return self.run("sh", "-c", f"cat {stem}.out {stem}.err")

    def stop_controller(self):
        self.in_login(STOP_DAEMONS)

    def start_controller(self):
        self.in_login(START_DAEMONS)

    def node_in_service(self, node):
        # A killed node's ad stays in the collector a while: it must be fresh.
        ads = self.run("condor_status", "-startd", "-af", "Machine", "LastHeardFrom").split("\n")
        heard = [int(f[1]) for f in (line.split() for line in ads) if len(f) == 2 and f[0].split(".")[0] == node]
        return bool(heard) and time.time() - max(heard) < 20

    def final_state(self, job_id):
        ended = self.run("condor_history", job_id, "-af", "JobStatus", "ExitCode").split()
        return f"JobStatus {ended[0]} ExitCode {ended[1]}" if ended else None

    def submit_script(self, path, job_name):
        # The description goes beside the script: the runner has no stdin to give condor_submit.
        self.run("chmod", "+x", path)  # HTCondor executes the script itself
        self.write_file(
            f"{path}.sub",
            "\n".join(
                [
                    f"executable = {path}",
                    f"description = {job_name}",
                    "output = /dev/null",
                    "error = /dev/null",
                    "should_transfer_files = NO",
                    "transfer_executable = false",
                    "queue",
                    "",
                ]
            ),
        )
        return self.run("condor_submit", "-terse", f"{path}.sub").split()[0]  # "<cluster>.<proc> - <cluster>.<proc>"
