"""What the suite needs to know about a testbed, beyond jqref itself:
how to list, cancel and inspect jobs with the batch system's own tools.
These go through the same runner as the cluster, so they run wherever the
batch commands run."""

from __future__ import annotations

import shlex
from contextlib import contextmanager

from jqref.runners import Runner


class Testbed:
    name: str
    cluster_cls: type
    #: A queue/partition that exists, and what the batch system says about one that does not.
    queue: str
    unknown_queue_error: str
    #: Characters a job name may hold here, to build a hostile but valid name.
    hostile_name_suffix = " 'q' $(x) `y`"
    #: A variable the batch system sets in every job, and whether it holds the
    #: job's id as the queue shows it (else a per-job scratch directory).
    job_variable = "SLURM_JOB_ID"
    job_variable_is_id = True
    #: Cluster options every test's clusters get here (what the suite checks the batch system granted).
    cluster_defaults: dict = {}
    #: Compute nodes, and the CPUs each advertises to the batch system (docker/<s>/).
    nodes = 2
    cpus_per_node = 2

    def __init__(self, runner: Runner):
        self.runner = runner

    @property
    def one_core_jobs_at_once(self) -> int:
        """How many one-core jobs (with the suite's default memory) run at once."""
        return self.nodes * self.cpus_per_node

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

    def job_log(self, log_directory: str, job_name: str, job_id: str) -> str:
        """What job `job_id` wrote to its output files (the workers log to stderr)."""
        return self.run("sh", "-c", f"cat {shlex.quote(log_directory)}/{shlex.quote(job_name)}*")

    # ---- faults ------------------------------------------------------------
    # These act on the containers with docker, from outside any batch command,
    # so they work only where the suite runs on the host (SSH mode).

    def stop_controller(self) -> None:
        """Take the batch system's controller down: batch commands fail until
        `start_controller`."""
        raise NotImplementedError

    def start_controller(self) -> None:
        """Bring the controller back, restarted; return once it answers."""
        raise NotImplementedError

    @contextmanager
    def controller_down(self):
        self.stop_controller()
        try:
            yield
        finally:
            self.start_controller()

    def node_in_service(self, node: str) -> bool:
        """Whether compute node `node` (its compose service name) takes jobs."""
        raise NotImplementedError

    def kill_node(self, node: str) -> None:
        """Kill compute node `node` at once, every process on it (as a power cut would)."""
        from ..conftest import node_containers

        node_containers().kill(node)

    def start_node(self, node: str, timeout: float = 240) -> None:
        """Start a killed node again and wait until it takes jobs."""
        from ..conftest import node_containers, wait_for

        node_containers().start(node)
        wait_for(lambda: self.node_in_service(node), f"{node} back in service", timeout=timeout, interval=2)

    def in_login(self, script: str) -> str:
        """Run a shell script as root on the login node (a Docker exec)."""
        from ..conftest import node_containers

        return node_containers().exec("login", "bash", "-c", script)[1]

    # ---- jobs of the batch system's own, not jqref's ---------------------------

    def write_file(self, path: str, text: str) -> None:
        """Write `text` to `path` where the batch commands run (the shared home)."""
        self.run("sh", "-c", 'printf %s "$1" >"$2"', "sh", text, path)

    def submit_script(self, path: str, job_name: str) -> str:
        """Submit the bash script at `path` as job `job_name` (what
        `active_jobs` looks for) with the batch system's own submit command,
        its output discarded; the job's id."""
        raise NotImplementedError

    # ---- the site's accounting ----------------------------------------------------

    def final_state(self, job_id: str) -> str | None:
        """How the batch system's accounting says finished job `job_id`
        ended, in its own words (None while it has no final record)."""
        raise NotImplementedError


def seconds(clock: str) -> int:
    """'1-02:03:04', '02:03:04' or '03:04' to seconds."""
    days, _, clock = clock.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s
