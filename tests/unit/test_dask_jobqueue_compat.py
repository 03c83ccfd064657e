"""dask-jobqueue configurations, rendered by jqref and run by the real shell.

Each case is a configuration of the kind dask-jobqueue's documentation and
site configs describe (our own words and values). Its job script runs under
`bash` in a temporary directory with site-like variables set; the
interpreter is an argv printer, so the worker command is recorded instead of
run, and the recorded argv is read back with dask-worker's own command-line
parser. Hostile values in every field must never run anything: each one
arrives as the characters it is, or is refused with an error naming it.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import sys
import warnings

import dask.config
import pytest
from distributed.cli.dask_worker import main as dask_worker_cli

from jqref import HTCondorCluster, PBSCluster, SGECluster, SLURMCluster
from jqref.htcondor import HTCondorJob
from jqref.pbs import PBSJob
from jqref.sge import SGEJob
from jqref.slurm import SLURMJob

SCHEDULER = "tcp://10.0.0.1:8786"
JOBS = {"slurm": SLURMJob, "sge": SGEJob, "pbs": PBSJob, "htcondor": HTCondorJob}
CLUSTERS = {"slurm": SLURMCluster, "sge": SGECluster, "pbs": PBSCluster, "htcondor": HTCondorCluster}
#: What each batch system tells a job about itself, as it would on a site.
JOB_VARIABLES = {
    "slurm": {"SLURM_JOB_ID": "4242"},
    "sge": {"JOB_ID": "4242"},
    "pbs": {"PBS_JOBID": "4242.pbs-server"},
    "htcondor": {"_CONDOR_SCRATCH_DIR": "/var/lib/condor/execute/dir_4242"},
}
JOB_DIRECTORY = {"slurm": "$SLURM_JOB_ID", "sge": "${JOB_ID}", "pbs": "$PBS_JOBID", "htcondor": "$_CONDOR_SCRATCH_DIR"}

PRINTER = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv, "env": dict(os.environ)}}) + "\\n")
"""


class Site:
    """A temporary home and scratch, an argv printer as the interpreter (and as
    `srun`), and the variables a batch system sets in a job."""

    def __init__(self, root, scheduler):
        self.root = root
        self.home = root / "home" / "alice"
        self.tmpdir = root / "scratch" / "job-4242"
        self.bin = root / "bin"
        self.log = root / "argv.jsonl"
        for directory in (self.home, self.tmpdir, self.bin):
            directory.mkdir(parents=True)
        self.python = self.home / "envs" / "dask" / "bin" / "python"
        for printer in (self.python, self.bin / "srun", self.bin / "python"):
            printer.parent.mkdir(parents=True, exist_ok=True)
            printer.write_text(PRINTER)
            printer.chmod(printer.stat().st_mode | stat.S_IXUSR)
        self.env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.home),
            "USER": "alice",
            "TMPDIR": str(self.tmpdir),
            "ARGV_LOG": str(self.log),
            **JOB_VARIABLES[scheduler],
        }

    def run(self, job):
        """Run the job's shell part as its batch system would; return what the printers recorded."""
        if isinstance(job, HTCondorJob):
            interpreter, *arguments = condor_arguments(job.submit_description()["arguments"])
            argv = ["/usr/bin/env", interpreter, *arguments]
        else:
            script = self.root / "job.sh"
            script.write_text(job.job_script())
            argv = ["bash", str(script)]
        done = subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=30)
        calls = [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return done, calls


def condor_arguments(value: str) -> list[str]:
    """HTCondor's new `arguments` syntax, read as condor_submit reads it: the
    whole in double quotes, words separated by spaces, single quotes group,
    doubled quote characters stand for one; then its $(DOLLAR) macro."""
    assert value.startswith('"') and value.endswith('"'), value
    body = value[1:-1].replace('""', '"')
    words, word, quoted, i = [], None, False, 0
    while i < len(body):
        char = body[i]
        if char == "'" and quoted and body[i + 1 : i + 2] == "'":
            word += "'"
            i += 2
            continue
        if char == "'":
            quoted = not quoted
            word = word or ""
        elif char == " " and not quoted:
            if word is not None:
                words.append(word)
            word = None
        else:
            word = (word or "") + char
        i += 1
    if word is not None:
        words.append(word)
    words = [w.replace("$(DOLLAR)", "$") for w in words]
    assert not any(re.search(r"\$\(", w) for w in words[:-1]), words
    return words


def worker_argv(calls):
    """The worker's command line: what follows `-m <module>` in the last call."""
    argv = calls[-1]["argv"]
    return argv[argv.index("-m") + 1 :]


def parsed(calls):
    """dask-worker's options, as its own parser reads the recorded command line."""
    module, *args = worker_argv(calls)
    assert module == "distributed.cli.dask_worker"
    return dask_worker_cli.make_context("dask-worker", args).params


def make_job(scheduler, site, **kwargs):
    kwargs = {"cores": 2, "memory": "2GiB", "python": str(site.bin / "python"), **kwargs}
    return JOBS[scheduler](SCHEDULER, "dask-worker-3", **kwargs)


@pytest.fixture(params=sorted(JOBS))
def scheduler(request):
    return request.param


@pytest.fixture
def site(tmp_path, scheduler):
    return Site(tmp_path, scheduler)


def run_worker(scheduler, site, **kwargs):
    done, calls = site.run(make_job(scheduler, site, **kwargs))
    assert done.returncode == 0, done.stderr
    return calls


# ---- configurations users rely on -------------------------------------------


def test_local_directory_from_tmpdir_expands_in_the_job(scheduler, site):
    assert parsed(run_worker(scheduler, site, local_directory="$TMPDIR"))["local_directory"] == str(site.tmpdir)


def test_site_scratch_from_the_config_uses_user_and_job_variables(scheduler, site):
    directory = f"/scratch/$USER/{JOB_DIRECTORY[scheduler]}/dask"
    with dask.config.set({f"jobqueue.{scheduler}.local-directory": directory}):
        params = parsed(run_worker(scheduler, site))
    (value,) = JOB_VARIABLES[scheduler].values()
    assert params["local_directory"] == f"/scratch/alice/{value}/dask"


def test_a_leading_tilde_is_the_home_directory(scheduler, site):
    worker = parsed(run_worker(scheduler, site, local_directory="~/dask tmp"))
    assert worker["local_directory"] == f"{site.home}/dask tmp"


def test_an_expanded_directory_is_one_word_even_with_spaces(scheduler, site):
    site.env["TMPDIR"] = "/scratch/a b *"
    assert parsed(run_worker(scheduler, site, local_directory="$TMPDIR/w"))["local_directory"] == "/scratch/a b */w"


def test_worker_extra_args_items_are_words(scheduler, site):
    params = parsed(
        run_worker(
            scheduler,
            site,
            worker_extra_args=[
                "--resources ssdGB=200,GPU=2",
                "--lifetime",
                "55m",
                "--lifetime-stagger '4 m'",
                '--pid-file "$HOME/w.pid"',
            ],
        )
    )
    assert params["resources"] == "ssdGB=200,GPU=2"
    assert (params["lifetime"], params["lifetime_stagger"]) == ("55m", "4 m")
    assert params["pid_file"] == f"{site.home}/w.pid"


def test_python_from_an_environment_under_home(scheduler, site):
    calls = run_worker(scheduler, site, python="$HOME/envs/dask/bin/python")
    assert [call["argv"][0] for call in calls] == [str(site.python)]  # the worker: the one Python a job starts
    assert parsed(calls)["scheduler"] == SCHEDULER


def test_python_behind_a_launcher(scheduler, site):
    calls = run_worker(scheduler, site, python="srun -n 1 python")
    assert calls[-1]["argv"][:5] == [str(site.bin / "srun"), "-n", "1", "python", "-m"]
    assert parsed(calls)["name"] == "dask-worker-3"


def test_threads_memory_and_workers_per_job(scheduler, site):
    params = parsed(
        run_worker(
            scheduler,
            site,
            cores=8,
            memory="16GB",
            processes=2,
            death_timeout="2 minutes",
            interface="ib0",
            nanny=False,
        )
    )
    assert (params["nthreads"], int(params["n_workers"]), params["interface"]) == (4, 2, "ib0")
    assert params["memory_limit"] == "7.45GiB"  # 8 GB, written as dask-jobqueue writes it
    assert (params["nanny"], float(params["death_timeout"])) == (False, 120)


def test_another_worker_command_gets_no_dask_worker_only_flags(scheduler, site):
    argv = worker_argv(run_worker(scheduler, site, worker_command="dask_cuda.cli worker", processes=2))
    assert argv[:3] == ["dask_cuda.cli", "worker", SCHEDULER]
    assert "--nanny" not in argv and "--nworkers" not in argv


def test_prologue_lines_are_the_users_shell(scheduler, site):
    calls = run_worker(scheduler, site, job_script_prologue=['export SCRATCH="$TMPDIR/$USER"', "cd $SCRATCH || true"])
    assert calls[-1]["env"]["SCRATCH"] == f"{site.tmpdir}/alice"


def test_config_name_picks_another_section(scheduler, site):
    section = {"cores": 4, "memory": "8GiB", "worker-extra-args": ["--resources GPU=1"]}
    with dask.config.set({f"jobqueue.{scheduler}-gpu": section}):
        params = parsed(run_worker(scheduler, site, cores=None, memory=None, config_name=f"{scheduler}-gpu"))
    assert (params["nthreads"], params["resources"]) == (1, "GPU=1")  # 4 cores: 4 workers of 1 thread


@pytest.mark.parametrize(
    "old, new, value",
    [
        ("extra", "worker_extra_args", ["--resources GPU=3"]),
        ("env_extra", "job_script_prologue", ["export FROM_OLD_NAME=yes"]),
    ],
)
def test_deprecated_keywords_still_work_with_a_future_warning(scheduler, site, old, new, value):
    with pytest.warns(FutureWarning, match=f"{old} has been renamed to {new}"):
        calls = run_worker(scheduler, site, **{old: value})
    assert parsed(calls)["resources"] == "GPU=3" if old == "extra" else calls[-1]["env"]["FROM_OLD_NAME"] == "yes"


def test_deprecated_config_keys_still_work(scheduler, site):
    with dask.config.set(
        {f"jobqueue.{scheduler}.extra": ["--resources GPU=4"], f"jobqueue.{scheduler}.env-extra": ["export OLD=1"]}
    ):
        with pytest.warns(FutureWarning) as warned:
            calls = run_worker(scheduler, site)
    assert {f"jobqueue.{scheduler}.{key}" for key in ("extra", "env-extra")} <= {
        str(w.message).split()[2] for w in warned
    }
    assert parsed(calls)["resources"] == "GPU=4" and calls[-1]["env"]["OLD"] == "1"


def test_a_new_name_wins_over_the_old_one_which_is_named_as_ignored(scheduler, site):
    with pytest.warns(FutureWarning, match="ignored"):
        calls = run_worker(scheduler, site, extra=["--resources A=1"], worker_extra_args=["--resources B=2"])
    assert parsed(calls)["resources"] == "B=2"


# ---- hostile values ---------------------------------------------------------

HOSTILE = [
    "$(touch {marker})",
    "`touch {marker}`",
    "a; touch {marker}",
    "a | touch {marker}",
    "a && touch {marker} &",
    "a > {marker}",
    "a\ntouch {marker}",
    "a\ntouch {marker}\n#",
    'it\'s "quoted" $(touch {marker})',
    "* ? [a]",
]
#: Every field whose value reaches the job script.
FIELDS = [
    "job_name",
    "queue",
    "account",
    "log_directory",
    "local_directory",
    "python",
    "worker_extra_args",
    "worker_command",
    "shared_temp_directory",
    "interface",
    "walltime",
]


def hostile_job(scheduler, site, field, value):
    if field == "python":
        return make_job(scheduler, site, python=f"{site.bin / 'python'} {value}")
    if field == "worker_extra_args":
        return make_job(scheduler, site, worker_extra_args=[value])
    if field == "worker_command":
        return make_job(scheduler, site, worker_command=f"distributed.cli.dask_worker {value}")
    return make_job(scheduler, site, **{field: value})


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_run_nothing(scheduler, site, field, template):
    marker = site.root / "pwned"
    value = template.format(marker=marker)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            job = hostile_job(scheduler, site, field, value)
    except (ValueError, TypeError) as refused:
        message = str(refused)
        assert field in message or value in message or repr(value)[1:-1] in message, message
        return
    done, calls = site.run(job)
    assert not marker.exists(), f"{field}={value!r} ran a command:\n{job.job_script()}"
    if field in ("python", "worker_extra_args", "worker_command"):
        # Split as a shell would, and otherwise exactly as written.
        words = shlex.split(value)
        argv = calls[-1]["argv"]
        assert any(argv[i : i + len(words)] == words for i in range(len(argv))), (words, argv)
    elif field == "local_directory":
        assert parsed(calls)["local_directory"] == value
    else:
        assert done.returncode == 0, done.stderr


# ---- API surface ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_an_unknown_keyword_names_the_closest_one(name):
    with pytest.raises(TypeError, match=r"'job_extra_directive'.*did you mean 'job_extra_directives'"):
        CLUSTERS[name](cores=1, memory="1GiB", job_extra_directive=["--x"])


def test_an_unknown_config_key_is_warned_about_with_the_closest_one_and_ignored():
    with dask.config.set({"jobqueue.slurm.local_directroy": "/x"}):
        with pytest.warns(UserWarning, match=r"'local_directroy'.*jobqueue\.slurm.*did you mean 'local-directory'"):
            job = SLURMJob(cores=1, memory="1GiB")
    assert "/x" not in job.job_script()


def test_sge_project_is_dask_jobqueues_name_for_the_account():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "#$ -P proj7" in SGEJob(cores=1, memory="1GiB", project="proj7").job_script().splitlines()


@pytest.mark.parametrize("job_cls, directive", [(SLURMJob, "#SBATCH -A proj7"), (PBSJob, "#PBS -A proj7")])
def test_project_is_deprecated_for_the_account_on_slurm_and_pbs(job_cls, directive):
    with pytest.warns(FutureWarning, match="project has been renamed to account"):
        assert directive in job_cls(cores=1, memory="1GiB", project="proj7").job_script().splitlines()


def test_pbs_account_falls_back_to_pbs_account_variable(monkeypatch):
    monkeypatch.setenv("PBS_ACCOUNT", "from-env")
    assert "#PBS -A from-env" in PBSJob(cores=1, memory="1GiB").job_script().splitlines()


#: Per scheduler: a directive its jobs carry, an extra directive, and how that one is written.
OLD_NAME_DIRECTIVES = {
    "slurm": ("--mem", ["--exclusive"], "#SBATCH --exclusive"),
    "sge": ("h_rt", ["-l gpu=1"], "#$ -l gpu=1"),
    "pbs": ("walltime", ["-l place=free"], "#PBS -l place=free"),
    "htcondor": ("RequestMemory", {"+Site": '"x"'}, '+Site = "x"'),
}


def test_header_skip_and_job_extra_old_names(scheduler):
    skip, extra, written = OLD_NAME_DIRECTIVES[scheduler]
    assert skip in "\n".join(JOBS[scheduler](cores=1, memory="1GiB").directive_lines())
    with pytest.warns(FutureWarning):
        job = JOBS[scheduler](cores=1, memory="1GiB", header_skip=[skip], job_extra=extra)
    header = job.directive_lines()
    assert not any(skip in line for line in header) and written in header


def test_cluster_attributes_dask_jobqueue_users_read():
    with SLURMCluster(
        cores=2,
        memory="2GiB",
        job_name="jq-attrs",
        scheduler_options={"dashboard_address": ":0"},
        shared_temp_directory="$HOME/.tmp",
        config_name="slurm",
    ) as cluster:
        assert cluster.job_cls is SLURMJob and cluster.job_name == "jq-attrs"
        assert cluster.job_header.splitlines()[0] == "#SBATCH -J jq-attrs"
        # Every job's header is the same but for its tag (the last directive).
        assert cluster.job_header.rsplit("\n", 1)[0] in cluster.job_script()
        assert cluster.shared_temp_directory == "$HOME/.tmp"
        assert cluster.dashboard_link.startswith("http")


def test_job_queue_cluster_with_a_job_class():
    from jqref import JobQueueCluster

    with JobQueueCluster(
        job_cls=SGEJob,
        cores=1,
        memory="1GiB",
        scheduler_options={"dashboard_address": ":0"},
        worker_command="dask_cuda.cli worker",
    ) as cluster:
        assert cluster.job_cls is SGEJob and "#$ -j y" in cluster.job_header
        assert "-m dask_cuda.cli worker" in cluster.job_script()


# ---- every dask-jobqueue 0.9 keyword and config key ---------------------------

#: dask-jobqueue 0.9's job keywords on every scheduler, with a value each
#: (the deprecated ones last).
COMMON_KEYWORDS = {
    "cores": 2,
    "memory": "2GiB",
    "processes": 1,
    "nanny": True,
    "protocol": "tcp://",
    "interface": "eth0",
    "death_timeout": 30,
    "local_directory": "$TMPDIR",
    "worker_command": "distributed.cli.dask_worker",
    "worker_extra_args": ["--lifetime 1h"],
    "job_extra_directives": [],
    "job_script_prologue": ["true"],
    "job_directives_skip": ["--nothing"],
    "log_directory": "/logs",
    "shebang": "#!/bin/bash",
    "python": "python3",
    "job_name": "dj",
    "config_name": None,
    "extra": [],
    "job_extra": [],
    "env_extra": [],
    "header_skip": [],
}
SCHEDULER_KEYWORDS = {
    "slurm": {"queue": "q", "account": "a", "walltime": "00:10:00", "job_cpu": 2, "job_mem": "2GiB", "project": "p"},
    "sge": {"queue": "q", "project": "p", "resource_spec": "h_vmem=1G", "walltime": "00:10:00"},
    "pbs": {"queue": "q", "account": "a", "resource_spec": "select=1:ncpus=2", "walltime": "00:10:00", "project": "p"},
    "htcondor": {
        "disk": "1GiB",
        "submit_command_extra": ["-verbose"],
        "cancel_command_extra": ["-forcex"],
        "job_extra_directives": {"+Site": '"x"'},
        "job_extra": {},
    },
}
#: Cluster keywords (JobQueueCluster's own).
CLUSTER_KEYWORDS = {
    "n_workers": 0,
    "loop": None,
    "security": None,
    "shared_temp_directory": "/shared",
    "silence_logs": "error",
    "name": "dj",
    "asynchronous": False,
    "dashboard_address": None,
    "host": None,
    "scheduler_options": {"dashboard_address": ":0"},
    "interface": None,
    "protocol": None,
    "config_name": None,
}
#: The keys of jobqueue.yaml's section for each scheduler, and the other keys its code reads.
CONFIG_KEYS = {
    "common": [
        "name",
        "cores",
        "memory",
        "processes",
        "python",
        "interface",
        "death-timeout",
        "local-directory",
        "shared-temp-directory",
        "extra",
        "worker-command",
        "worker-extra-args",
        "shebang",
        "env-extra",
        "job-script-prologue",
        "job-extra",
        "job-extra-directives",
        "job-directives-skip",
        "header-skip",
        "log-directory",
        "scheduler-options",
    ],
    "slurm": ["queue", "account", "walltime", "job-cpu", "job-mem", "project"],
    "sge": ["queue", "project", "resource-spec", "walltime"],
    "pbs": ["queue", "account", "resource-spec", "walltime", "project"],
    "htcondor": ["disk", "submit-command-extra", "cancel-command-extra"],
}


def test_every_dask_jobqueue_keyword_is_accepted(scheduler):
    keywords = {**COMMON_KEYWORDS, **SCHEDULER_KEYWORDS[scheduler]}
    if scheduler == "htcondor":
        keywords["job_directives_skip"] = ["+Nothing"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        job = JOBS[scheduler](SCHEDULER, "w", **keywords)
        cluster = CLUSTERS[scheduler](**{**keywords, **CLUSTER_KEYWORDS})
    assert "--lifetime 1h" in job.job_script()
    cluster.close()


def test_every_dask_jobqueue_config_key_is_accepted(scheduler):
    samples = {**CLUSTER_KEYWORDS, **COMMON_KEYWORDS, **SCHEDULER_KEYWORDS[scheduler]}
    samples.update(job_directives_skip=[], header_skip=[], shared_temp_directory="/shared")
    section = {
        key: samples["job_name" if key == "name" else key.replace("-", "_")]
        for key in CONFIG_KEYS["common"] + CONFIG_KEYS[scheduler]
    }
    assert all(value is not None for value in section.values())  # a None key would not be checked
    section.update(
        {
            "cores": 3,
            "memory": "3GiB",
            "worker-extra-args": ["--lifetime 2h"],
            "job-script-prologue": ["echo from-config"],
            "scheduler-options": {"dashboard_address": ":0"},
        }
    )
    with dask.config.set({f"jobqueue.{scheduler}": section}), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        script = JOBS[scheduler](SCHEDULER, "w").job_script()
    assert "--lifetime 2h" in script and "echo from-config" in script


def test_the_epilogue_runs_after_the_workers_on_every_scheduler(scheduler, site):
    marker = site.root / "after"
    job = make_job(scheduler, site, job_script_epilogue=[f'echo "after $status" > {marker}'])
    done, calls = site.run(job)
    assert done.returncode == 0, done.stderr
    assert parsed(calls)["nthreads"] == 1 and marker.read_text() == "after 0\n"
    # The epilogue, then the workers' status, end the job: nothing of the job script comes after them.
    assert job.shell_commands()[-2:] == [f'echo "after $status" > {marker}', 'exit "$status"']
