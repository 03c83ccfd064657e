"""Site configurations written for dask-jobqueue give the same job under jqref.

Each configuration is of a shape HPC centres publish for their users (our
own values), rendered by dask-jobqueue 0.9.0 (a test dependency) and by
jqref in one process — as in a notebook that imports both while migrating,
so dask-jobqueue's packaged defaults sit in the dask config too. What is
compared is what the batch system is asked for and the worker's command
line as dask-worker's own parser reads it, never the text — but for the
directive lines, which are dask-jobqueue's own plus jqref's.
"""

from __future__ import annotations

import shlex
import warnings

import dask.config
import dask_jobqueue
import pytest
from dask.utils import parse_bytes
from distributed.cli.dask_worker import main as dask_worker_cli

import jqref
from jqref.config import UnknownConfigKeyWarning

SCHEDULERS = ["slurm", "sge", "pbs"]
CLUSTERS = {
    "slurm": (jqref.SLURMCluster, dask_jobqueue.SLURMCluster),
    "sge": (jqref.SGECluster, dask_jobqueue.SGECluster),
    "pbs": (jqref.PBSCluster, dask_jobqueue.PBSCluster),
    "htcondor": (jqref.HTCondorCluster, dask_jobqueue.HTCondorCluster),
}
#: Per directive prefix: option spellings to the resource they request.
SLURM_OPTIONS = {
    "-J": "name",
    "--job-name": "name",
    "-p": "queue",
    "--partition": "queue",
    "-A": "account",
    "--account": "account",
    "-t": "walltime",
    "--time": "walltime",
    "--cpus-per-task": "cores",
    "-c": "cores",
    "--mem": "memory",
    "-n": "tasks",
    "--ntasks": "tasks",
}
SLURM_UNITS = {"K": "KiB", "M": "MiB", "G": "GiB", "T": "TiB"}


def slurm_requests(script: str) -> dict:
    requests = {}
    for line in script.splitlines():
        if not line.startswith("#SBATCH "):
            continue
        words = shlex.split(line[len("#SBATCH ") :])
        option, _, value = words[0].partition("=")
        value = value or (words[1] if len(words) > 1 else "")
        if option in SLURM_OPTIONS:
            requests[SLURM_OPTIONS[option]] = value
    if "memory" in requests:  # Slurm's units are binary; a bare number is MiB
        number, unit = requests["memory"][:-1], requests["memory"][-1]
        requests["memory"] = (
            parse_bytes(f"{number} {SLURM_UNITS[unit]}")
            if unit in SLURM_UNITS
            else parse_bytes(f"{requests['memory']} MiB")
        )
    return requests


def time_limit(scheduler: str, script: str) -> str | None:
    """The time limit a script asks for, however it is spelled."""
    if scheduler == "slurm":
        return slurm_requests(script).get("walltime")
    key = {"sge": "h_rt=", "pbs": "walltime="}[scheduler]
    for line in script.splitlines():
        if line.startswith(("#$", "#PBS")) and key in line:
            return line.split(key, 1)[1].split(",")[0].split(":", 0)[0].strip()
    return None


def worker_params(script: str) -> dict:
    """dask-worker's options, as its parser reads the script's worker command."""
    (line,) = [line for line in script.splitlines() if "-m distributed.cli.dask_worker" in line]
    words = shlex.split(line.removeprefix("exec ").removesuffix(" &"))
    args = words[words.index("distributed.cli.dask_worker") + 1 :]
    return dask_worker_cli.make_context("dask-worker", args).params


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def site(scheduler: str, section: dict) -> dict:
    """A site's section, key by key, merged into the config as a jobqueue.yaml would be."""
    return {f"jobqueue.{scheduler}.{key}": value for key, value in section.items()}


def both(scheduler, **kwargs):
    """The cluster classes of jqref and dask-jobqueue, made with the same arguments."""
    ours, theirs = CLUSTERS[scheduler]
    return ours(**kwargs), theirs(**kwargs)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_the_interface_in_a_config_section_puts_scheduler_and_workers_on_it(scheduler, quiet):
    section = {"cores": 2, "memory": "2GiB", "interface": "lo", "scheduler-options": {"dashboard_address": ":0"}}
    with dask.config.set(site(scheduler, section)):
        ours, theirs = both(scheduler)
        with ours, theirs:
            assert ours.scheduler_spec["options"]["interface"] == theirs.scheduler_spec["options"]["interface"] == "lo"
            assert ours.scheduler.address.startswith("tls://127.0.0.1:")  # jqref's default is TLS
            assert worker_params(ours.job_script())["interface"] == worker_params(theirs.job_script())["interface"]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_walltime_null_asks_for_no_time_limit(scheduler, quiet):
    section = {"cores": 1, "memory": "1GiB", "walltime": None, "scheduler-options": {"dashboard_address": ":0"}}
    with dask.config.set(site(scheduler, section)):
        ours, theirs = both(scheduler)
        with ours, theirs:
            assert time_limit(scheduler, ours.job_script()) is None
            assert time_limit(scheduler, theirs.job_script()) is None


def test_the_cluster_name_names_the_workers_not_the_jobs(quiet):
    ours, theirs = both("slurm", cores=1, memory="1GiB", name="spice", scheduler_options={"dashboard_address": ":0"})
    with ours, theirs:
        assert ours.job_name == theirs.job_name == "dask-worker"
        assert slurm_requests(ours.job_script())["name"] == slurm_requests(theirs.job_script())["name"]
        assert ours._new_worker_name(0) == theirs._new_worker_name(0) == "spice-0"


def test_keys_dask_jobqueue_ignores_are_warned_about_and_ignored(quiet):
    section = {
        "cores": 2,
        "memory": "4GiB",
        "silence_logs": "error",
        "worker-extra": ["--lifetime", "1h"],
        "scheduler-options": {"dashboard_address": ":0"},
    }
    with dask.config.set(site("slurm", section)):
        with pytest.warns(UnknownConfigKeyWarning, match="worker-extra.*ignored"):
            ours, theirs = both("slurm")
        with ours, theirs:
            # The walltime's, less lifetime_margin: not the ignored key's 1h.
            assert worker_params(ours.job_script())["lifetime"] == "1500s"
            assert slurm_requests(ours.job_script()) == slurm_requests(theirs.job_script())


def test_a_typical_slurm_site_gets_the_same_requests_and_workers(quiet):
    section = {
        "cores": 36,
        "memory": "180GB",
        "processes": 6,
        "queue": "compute",
        "account": "proj42",
        "walltime": "04:00:00",
        "death-timeout": 120,
        "local-directory": "/scratch",
        "scheduler-options": {"dashboard_address": ":0"},
    }
    with dask.config.set(site("slurm", section)):
        ours, theirs = both("slurm")
        with ours, theirs:
            assert slurm_requests(ours.job_script()) == slurm_requests(theirs.job_script())
            mine, reference = worker_params(ours.job_script()), worker_params(theirs.job_script())
            for option in ("nthreads", "n_workers", "memory_limit", "death_timeout", "local_directory", "nanny"):
                assert mine[option] == reference[option], option


def test_dask_jobqueues_packaged_defaults_do_not_become_jqrefs():
    # Importing dask_jobqueue put its defaults under jobqueue.*, e.g. HTCondor's condor_submit shebang.
    assert dask.config.get("jobqueue.htcondor.shebang") == "#!/usr/bin/env condor_submit"
    job = jqref.HTCondorJob("tcp://10.0.0.1:8786", "w", cores=1, memory="1GiB")
    description = job.submit_description()
    assert description["executable"] == "/usr/bin/env" and description["arguments"].startswith("\"'bash'")
    # A value the user set (different from the packaged one) is read as before.
    with dask.config.set({"jobqueue.slurm.walltime": "01:00:00"}):
        assert jqref.SLURMJob(cores=1, memory="1GiB").walltime == "01:00:00"


#: The directive lines jqref adds to dask-jobqueue 0.9.0's, per scheduler: SLURM's
#: comment and SGE's context variable carry the tag a lost submission is found
#: by (PBS's is in the job name), -notify gives SGE's workers a warning, and
#: --nodes=1 is dask-jobqueue's main branch's.
JQREFS_OWN = {
    "slurm": ("#SBATCH --comment jqref-", "#SBATCH --nodes=1"),
    "sge": ("#$ -ac jqref_tag=", "#$ -notify"),
    "pbs": (),
}
#: The same options for both packages' job classes, and per scheduler its own.
HEADER_CASES = [
    {},
    {
        "cores": 4,
        "memory": "28GB",
        "queue": "q1",
        "walltime": "01:00:00",
        "log_directory": "/logs",
        "job_name": "jn",
        "job_extra_directives": ["--extra"],
    },
    {"cores": 3, "memory": "1GB", "job_directives_skip": ["-t ", "-l walltime", "h_rt"]},
]
OWN_CASES = {
    "slurm": [{"account": "a"}, {"job_cpu": 8, "job_mem": "4000"}],
    "sge": [{"project": "a"}, {"resource_spec": "h_vmem=4G"}],
    "pbs": [{"account": "a"}, {"resource_spec": "select=1:ncpus=8:mem=4gb"}],
}


@pytest.mark.parametrize(
    "scheduler, options",
    [(s, {**case, **own}) for s in SCHEDULERS for case in HEADER_CASES for own in [{}, *OWN_CASES[s]]],
)
def test_the_directive_lines_are_dask_jobqueues_plus_jqrefs_own(scheduler, options, quiet, monkeypatch):
    monkeypatch.delenv("PBS_ACCOUNT", raising=False)
    options = {"cores": 1, "memory": "1GiB", **options}
    ours, theirs = (
        module.__dict__[f"{scheduler.upper()}Job"]("tcp://10.0.0.1:8786", "w-0", **options)
        for module in (getattr(jqref, scheduler), getattr(dask_jobqueue, scheduler))
    )
    lines = ours.job_header.splitlines()
    if scheduler == "pbs":  # queued under its name plus the tag's suffix
        assert lines[0] == f"#PBS -N {ours.tag}" and ours.tag.startswith(f"{ours.job_name}-")
        lines[0] = f"#PBS -N {ours.job_name}"
    assert [line for line in lines if not line.startswith(JQREFS_OWN[scheduler])] == theirs.job_header.splitlines()


@pytest.mark.parametrize("log_directory", [None, "/scratch/logs"])
def test_htcondor_jobs_stream_and_name_their_output_as_dask_jobqueues(log_directory, quiet):
    options = {"cores": 2, "memory": "4GB", "disk": "1GB", "log_directory": log_directory}
    ours, theirs = (
        module.HTCondorJob("tcp://10.0.0.1:8786", "w-0", **options)
        for module in (jqref.htcondor, dask_jobqueue.htcondor)
    )
    keys = [
        "Stream_Output",
        "Stream_Error",
        "LogDirectory",
        "Output",
        "Error",
        "Log",
        "batch_name",
        "RequestCpus",
        "RequestMemory",
        "RequestDisk",
        "MY.DaskWorkerCores",
        "MY.DaskWorkerMemory",
        "MY.DaskWorkerDisk",
    ]
    assert {key: ours.job_header_dict.get(key) for key in keys} == {
        key: theirs.job_header_dict.get(key) for key in keys
    }
