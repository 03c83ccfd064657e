"""Job script rendering: directives, worker command, quoting, validation."""

import os
import shlex
import signal

import dask.config
import pytest

from jqref.preload import worker_preload_args
from jqref.slurm import SLURMJob

import stand_in_worker

HOSTILE = [
    "two words",
    'it\'s "quoted"',
    "$(touch /tmp/jqref-pwned)",
    "`touch /tmp/jqref-pwned`",
    "a;b&&c|d>e",
    "${HOME}*?",
]


def make_job(**kwargs):
    kwargs.setdefault("cores", 2)
    kwargs.setdefault("memory", "2 GiB")
    return SLURMJob("tcp://10.0.0.1:8786", "dask-worker-0", **kwargs)


def directive_args(script):
    """Each #SBATCH line split back into arguments as a shell would."""
    return [shlex.split(line[len("#SBATCH ") :]) for line in script.splitlines() if line.startswith("#SBATCH ")]


def command_line(script):
    (line,) = [line for line in script.splitlines() if line.startswith("exec ")]
    return shlex.split(line)[1:]


def test_directives_for_every_option():
    job = make_job(queue="debug", account="proj", walltime="01:00:00", log_directory="/logs", job_name="jn")
    assert directive_args(job.job_script())[:-1] == [  # spelled as dask-jobqueue spells them
        ["-J", "jn"],
        ["-e", "/logs/jn-%J.err"],
        ["-o", "/logs/jn-%J.out"],
        ["-p", "debug"],
        ["-A", "proj"],
        ["-n", "1"],
        ["--nodes=1"],
        ["--cpus-per-task=2"],
        ["--mem=2G"],
        ["-t", "01:00:00"],
    ]
    assert directive_args(job.job_script())[-1] == ["--comment", job.tag]


def test_memory_is_rounded_up_in_the_largest_binary_unit_as_dask_jobqueue_does():
    assert ["--mem=954M"] in directive_args(make_job(memory="1GB").job_script())
    assert ["--mem=27G"] in directive_args(make_job(memory="28GB").job_script())


def test_job_cpu_and_job_mem_override_directives_only():
    job = make_job(job_cpu=4, job_mem="4000")  # the user's words to Slurm (its MB), passed unchanged
    args = directive_args(job.job_script())
    assert ["--cpus-per-task=4"] in args and ["--mem=4000"] in args
    assert "--nthreads" in command_line(job.job_script())


@pytest.mark.parametrize("job_mem", ["100G", "4000", "0", 0, "1500M"])
def test_job_mem_is_passed_to_slurm_as_written(job_mem):
    # 0 is Slurm's "all of the node's memory"; a bare number is its MB.
    assert [f"--mem={job_mem}"] in directive_args(make_job(job_mem=job_mem).job_script())


def test_skip_drops_generated_directives_and_never_the_users_own():
    job = make_job(
        job_extra_directives=["--exclusive", "--gres=gpu:1", "--time=01:00:00"], job_directives_skip=["--time", "gres"]
    )
    lines = [line for line in job.job_script().splitlines() if line.startswith("#SBATCH")]
    assert lines[-3:] == ["#SBATCH --exclusive", "#SBATCH --gres=gpu:1", "#SBATCH --time=01:00:00"]
    assert not any("--time" in line for line in lines[:-3])


def test_a_clusters_job_loads_jqrefs_preload_files():
    files = {"worker_versions": "/h/versions.py", "worker_signals": "/h/signals.py"}
    script = make_job(preloads=files).job_script()
    assert worker_preload_args(True, files) == command_line(script)[-10:-6]
    other = make_job(preloads=files, worker_command="dask_cuda.cli").job_script()
    assert "--preload" not in other, "another worker command may not know --preload"


def test_prologue_comes_before_the_worker():
    script = make_job(job_script_prologue=["module load python", "source env/bin/activate"]).job_script()
    lines = script.splitlines()
    assert lines.index("module load python") < lines.index("source env/bin/activate")
    assert lines.index("source env/bin/activate") < next(i for i, line in enumerate(lines) if line.startswith("exec "))


def test_worker_command():
    job = make_job(
        cores=4,
        memory="8GiB",
        processes=2,
        death_timeout=30,
        local_directory="/tmp/x",
        interface="eth0",
        worker_extra_args=["--resources", "GPU=1"],
        python="/opt/py/bin/python",
    )
    assert command_line(job.job_script()) == [
        "/opt/py/bin/python",
        "-m",
        "distributed.cli.dask_worker",
        "tcp://10.0.0.1:8786",
        "--name",
        "dask-worker-0",
        "--nthreads",
        "2",
        "--memory-limit",
        "4.00GiB",
        "--nworkers",
        "2",
        "--nanny",
        "--death-timeout",
        "30",
        "--interface",
        "eth0",
        "--local-directory",
        "/tmp/x",
        "--resources",
        "GPU=1",
        # The default walltime, 30 minutes, less the default lifetime_margin, 5 minutes.
        "--lifetime",
        "1500s",
        "--lifetime-stagger",
        "150s",
    ]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_directive_values_come_back_unchanged(value):
    args = directive_args(make_job(job_name=value, log_directory=value, queue=value).job_script())
    assert ["-J", value] in args and ["-p", value] in args
    assert ["-o", f"{value}/{value}-%J.out"] in args


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"memory": "lots"}, "not a size"),
        ({"memory": None}, "how many cores and how much memory"),
        ({"cores": 0}, "at least 1"),
        ({"cores": 2, "processes": 3}, "between 1 and cores"),
        ({"job_name": "a\nrm -rf /"}, "single line"),
        ({"job_extra_directives": ["--x\nrm -rf /"]}, "single line"),
        ({"worker_extra_args": "--foo"}, "list of strings"),
        ({"no_such_option": 1}, "unexpected keyword"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_job(**kwargs)


def test_processes_default_is_distributeds_rule_as_in_dask_jobqueue():
    # One worker per core up to 4 cores, then about sqrt(cores) workers.
    assert [make_job(cores=c).processes for c in (1, 2, 4, 6, 8, 9, 12)] == [1, 2, 4, 3, 4, 3, 4]


def test_config_precedence_kwarg_then_jqref_then_jobqueue_then_default():
    assert make_job().walltime == "00:30:00"
    with dask.config.set({"jobqueue.slurm.walltime": "02:00:00"}):
        assert make_job().walltime == "02:00:00"
        with dask.config.set({"jqref.slurm.walltime": "03:00:00"}):
            assert make_job().walltime == "03:00:00"
            assert make_job(walltime="04:00:00").walltime == "04:00:00"


def test_cores_and_memory_from_config():
    with dask.config.set(
        {"jqref.slurm.cores": 3, "jqref.slurm.memory": "3GiB", "jqref.slurm.job-extra-directives": ["--x"]}
    ):
        job = SLURMJob("tcp://a:1", "w")
        assert (job.cores, job.memory_bytes, job.processes) == (3, 3 * 2**30, 3)
        assert "#SBATCH --x" in job.job_script()


def test_an_epilogue_runs_after_the_workers_which_still_get_the_batch_shells_sigterm(tmp_path):
    log, after = tmp_path / "signals", tmp_path / "after"
    script = tmp_path / "job.sh"
    script.write_text(
        make_job(
            python=stand_in_worker.install(tmp_path), job_script_epilogue=[f'echo "workers ended: $status" > {after}']
        ).job_script()
    )
    shell = stand_in_worker.run_until_started(script, log)
    os.kill(shell.pid, signal.SIGTERM)  # scancel --batch --signal=TERM: the batch shell only
    assert shell.wait(timeout=20) == 7
    assert log.read_text().splitlines() == ["started False", "TERM"]
    assert after.read_text() == "workers ended: 7\n"
