"""The scheduler in a batch job of its own (``scheduler_on="job"``): its job
script, its options and the scheduler file it writes. The job itself runs on
the isolated testbeds (tests/integration/test_scheduler_job.py)."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys

import pytest
from distributed import Scheduler
from distributed.core import rpc
from distributed.security import Security

from jqref import SLURMCluster
from jqref.__main__ import planned_cleanup
from jqref.placement import JobPlacement
from jqref.placement.job import (
    command_arguments,
    scheduler_file_address,
    scheduler_files,
    scheduler_job_options,
    scheduler_words,
)
from jqref.placement.login import KEEPER_SOURCE
from jqref.placement.session_keeper import preload_arguments
from jqref.records import JobRecord
from jqref.runners import LocalRunner
from jqref.sge import SGEJob
from jqref.slurm import SLURMJob
from jqref.tls_roles import cluster_credentials


def placement(job_cls=SLURMJob, scheduler_job=None, session=None, **options) -> JobPlacement:
    template = job_cls(
        cores=4,
        memory="8GiB",
        processes=2,
        python="/opt/env/bin/python3",
        job_name="analysis",
        **options,
    )
    return JobPlacement(
        LocalRunner(), template, scheduler_job, ".jqref/credentials", True, 1.0, print, print, session=session
    )


def script_lines(script: str, prefix: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith(prefix)]


def test_the_script_runs_distributeds_scheduler_command_in_plain_shell():
    job = placement(account="proj42", job_script_prologue=["module load python"])
    script = job.job_script({"dashboard_address": ":0", "preload": ["/home/u/guard.py"]})
    command = script.splitlines()[-1]
    assert command == (
        "exec /opt/env/bin/python3 -m distributed.cli.dask_scheduler --scheduler-file SCHEDULER-FILE "
        "--port 0 --dashboard-address :0 --preload /home/u/guard.py 2>>SCHEDULER-LOG"
    )
    assert "module load python" in script.splitlines(), "the site's prologue runs before the scheduler too"
    directives = script_lines(script, "#SBATCH")
    assert "#SBATCH -J analysis-scheduler" in directives
    assert "#SBATCH -A proj42" in directives
    assert "#SBATCH --cpus-per-task=1" in directives and "#SBATCH --mem=2G" in directives
    assert not any("--array" in line for line in directives), "one job, never an array"


def test_scheduler_job_sets_the_jobs_resources_and_the_rest_are_the_workers():
    job = placement(SGEJob, {"cores": 2, "memory": "1GiB", "walltime": "08:00:00", "queue": "long"}, queue="short")
    directives = script_lines(job.job_script({}), "#$")
    assert "#$ -q long" in directives and "#$ -l h_rt=08:00:00" in directives
    inherited = placement(SGEJob, queue="short", walltime="01:00:00")
    directives = script_lines(inherited.job_script({}), "#$")
    assert "#$ -q short" in directives and "#$ -l h_rt=01:00:00" in directives


def test_tls_material_and_the_scheduler_file_are_paths_on_the_command_line():
    words = scheduler_words(
        ["python3"],
        {"host": "10.0.0.1"},
        {"tls_ca_file": "/h/ca", "tls_scheduler_cert": "/h/cert", "tls_scheduler_key": "/h/my key"},
        "/h/s.json",
    )
    assert shlex.split(" ".join(words)) == [
        "python3",
        "-m",
        "distributed.cli.dask_scheduler",
        "--scheduler-file",
        "/h/s.json",
        "--port",
        "0",
        "--host",
        "10.0.0.1",
        "--tls-ca-file",
        "/h/ca",
        "--tls-cert",
        "/h/cert",
        "--tls-key",
        "/h/my key",
    ]


def test_the_scheduler_reads_its_own_key_and_preloads_never_the_workers_or_the_clients():
    security = cluster_credentials()
    files = scheduler_files(security, "abc")
    assert set(files) == {
        "tls_ca_file",
        "tls_scheduler_cert",
        "tls_scheduler_key",
        "preload:tls_roles",
        "preload:ssl_error_queue",
    }
    assert files["tls_scheduler_key"][1] == security.tls_scheduler_key
    assert all(
        security.tls_worker_key not in text and security.tls_client_key not in text for _, text in files.values()
    )
    assert scheduler_files(None, "abc") == {}
    one_for_all = scheduler_files(Security.temporary(), "abc")
    assert "preload:tls_roles" not in one_for_all, "the roles' guard serves only certificates that name roles"


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({"cpus": 2}, "unknown key 'cpus'; it takes cores, memory, walltime, queue, start_timeout"),
        ({"start_timeout": "soon"}, "scheduler_job['start_timeout']='soon'"),
        ({"start_timeout": 0}, "scheduler_job['start_timeout']=0"),
    ],
)
def test_bad_scheduler_job_values_name_the_key_and_value(given, fragment):
    with pytest.raises(ValueError) as error:
        scheduler_job_options(given)
    assert fragment in str(error.value)


def test_scheduler_job_defaults():
    assert scheduler_job_options(None) == {"cores": 1, "memory": "2GiB", "start_timeout": 300}
    assert scheduler_job_options({"cores": 2, "queue": None})["cores"] == 2


@pytest.mark.parametrize(
    ("scheduler_job", "fragment"),
    [
        ({"cores": "two"}, "scheduler_job"),
        ({"memory": "lots"}, "scheduler_job"),
        ({"nodes": 2}, "scheduler_job"),
    ],
)
def test_the_cluster_refuses_bad_scheduler_job_values_before_submitting(scheduler_job, fragment):
    with pytest.raises(ValueError, match=fragment):
        SLURMCluster(cores=1, memory="1GiB", scheduler_on="job", scheduler_job=scheduler_job)


def test_scheduler_options_the_command_cannot_take_are_refused_naming_them():
    assert command_arguments({"port": 0, "dashboard": False, "preload": ["a"]}) == [
        "--port",
        "0",
        "--no-dashboard",
        "--preload",
        "a",
    ]
    with pytest.raises(ValueError, match=r"scheduler_options=\{'allowed_failures': 5\}.*scheduler_on='client'"):
        command_arguments({"allowed_failures": 5})
    with pytest.raises(ValueError, match="allowed_failures"):
        SLURMCluster(
            cores=1, memory="1GiB", scheduler_on="job", scheduler_options={"allowed_failures": 5}, asynchronous=True
        )


def test_detach_is_refused_with_the_scheduler_in_the_clients_process():
    with pytest.raises(ValueError, match=r"detach=True with scheduler_on='client'.*'login'.*'job'"):
        SLURMCluster(cores=1, memory="1GiB", scheduler_on="client", detach=True)
    with pytest.raises(ValueError, match="security=False cannot go with detach=True"):
        SLURMCluster(cores=1, memory="1GiB", scheduler_on="job", detach=True, security=False)


SESSION = {"directory": ".jqref/sessions/s1", "idle_timeout": 20.0, "cancel_command": ["scancel", "--clusters=c1"]}


def test_detached_the_job_preloads_the_session_keeper_last_and_configures_it_on_the_command_line():
    job = placement(session=SESSION)
    files = scheduler_files(Security.temporary(), "t0k3n", detached=True)
    assert list(files)[-1] == "preload:session_keeper" and files["preload:session_keeper"][0].endswith(".py")
    assert "def dask_setup(" in files["preload:session_keeper"][1], "the keeper's source, as a file the job reads"
    script = job.job_script({"dashboard_address": ":0", "preload": ["/home/u/jqref_session_keeper_t0k3n.py"]})
    assert script.splitlines()[-1].endswith(
        "--preload /home/u/jqref_session_keeper_t0k3n.py --jqref-session .jqref/sessions/s1 "
        "--jqref-idle-timeout 20 --jqref-cancel-command 'scancel --clusters=c1' 2>>SCHEDULER-LOG"
    ), "after the command's own options, where it passes them on to the preload"
    assert "preload:session_keeper" not in scheduler_files(Security.temporary(), "t0k3n")


def test_the_session_keeper_in_a_scheduler_keeps_its_state_and_left_alone_cancels_its_jobs_and_ends(
    tmp_path, monkeypatch
):
    # The keeper as the job runs it: a preload file with its arguments, in a real scheduler.
    monkeypatch.setenv("HOME", str(tmp_path))
    keeper = tmp_path / "jqref_session_keeper_t0k3n.py"
    keeper.write_text(KEEPER_SOURCE)
    cancelled = tmp_path / "cancelled"
    cancel = [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))", str(cancelled)]
    session = tmp_path / ".jqref" / "sessions" / "s1"

    async def main():
        arguments = preload_arguments(".jqref/sessions/s1", 0.5, cancel)
        async with Scheduler(dashboard_address=":0", preload=[str(keeper)], preload_argv=arguments) as scheduler:
            state = json.loads((session / "state.json").read_text())
            assert state["address"] == scheduler.address and state["jobs"] == {}
            assert {path.stat().st_mode & 0o777 for path in (session.parent, session)} == {0o700}
            async with rpc(scheduler.address) as through_the_wire:
                await through_the_wire.jqref_heartbeat(jobs={"11": "w-0", "12": "w-1"})
            await asyncio.wait_for(scheduler.finished(), 30)
            return scheduler.status.name

    assert asyncio.run(main()) == "closed"
    assert cancelled.read_text() == "11 12"
    assert not session.exists(), "the keeper removes its session's directory once the scheduler has closed"


def test_the_address_and_dashboard_port_are_read_from_the_scheduler_file():
    identity = {"type": "Scheduler", "address": "tls://10.1.2.3:40123", "services": {"dashboard": 38001}}
    assert scheduler_file_address(json.dumps(identity)) == ("tls://10.1.2.3:40123", 38001)
    assert scheduler_file_address(json.dumps({**identity, "services": {}})) == ("tls://10.1.2.3:40123", None)
    # Missing, or caught while distributed writes it: not yet.
    assert scheduler_file_address("") is None
    assert scheduler_file_address(json.dumps(identity)[:20]) is None
    assert scheduler_file_address(json.dumps({"type": "Scheduler"})) is None


def test_cleanup_cancels_the_scheduler_job_with_the_workers():
    record = JobRecord(job_class="jqref.slurm.SLURMJob", cancel_command=["scancel"], runner={"kind": "local"})
    record.jobs = ["11", "12"]
    assert record.all_jobs == ["11", "12"]
    record.scheduler_job = "10"
    assert record.all_jobs == ["11", "12", "10"]
    assert JobRecord(**{**record.__dict__, "scheduler_job": None}).all_jobs == ["11", "12"]


def test_cleanup_of_a_detached_session_in_a_job_cancels_its_jobs_and_removes_its_state(tmp_path, monkeypatch):
    # Its scheduler is not a process on the login node to stop: its job is cancelled with the workers'.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "session").mkdir()
    (tmp_path / "session" / "state.json").write_text(json.dumps({"pid": 1}))
    cancelled = tmp_path / "cancelled"
    cancel = [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))", str(cancelled)]
    record = JobRecord(job_class="jqref.slurm.SLURMJob", cancel_command=cancel, runner={"kind": "local"})
    record.jobs, record.scheduler_job = ["11"], "10"
    record.session = {"directory": str(tmp_path / "session"), "options": {"scheduler_on": "job"}}
    assert record.session_in_job
    outcome = record.cancel_jobs()
    assert outcome.errors == [] and outcome.notes == ["its detached scheduler's job 10 was cancelled with the rest"]
    assert cancelled.read_text() == "11 10" and not (tmp_path / "session").exists()


def test_cleanup_dry_run_of_a_detached_session_in_a_job_says_its_state_goes_with_the_jobs():
    record = JobRecord(job_class="jqref.slurm.SLURMJob", cancel_command=["scancel"], runner={"kind": "local"})
    record.jobs, record.scheduler_job = ["11"], "10"
    record.session = {"directory": ".jqref/sessions/s1", "options": {"scheduler_on": "job"}}
    plan = planned_cleanup(record)
    assert "remove its detached session's state (.jqref/sessions/s1" in plan and "scancel 11 10" in plan
    assert "stop its detached scheduler" not in plan, "no process on the login node to signal"
