"""The jqref command (jqref/__main__.py): --version, help for every command,
cleanup --dry-run, status; and the versions it reports (jqref.__version__,
jqref.compat_versions)."""

import functools
import importlib.metadata
import os
import pathlib
import re
import socket
import subprocess
import sys
import tomllib
import warnings

import dask.config
import pytest

import jqref
from jqref import compat_versions
from jqref.__main__ import main, parser
from jqref.records import JobRecord, load_records

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "jqref"


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def record(cancel_command, pid, runner=None, job_class="jqref.slurm.SLURMJob"):
    return JobRecord(job_class=job_class, cancel_command=cancel_command, runner=runner or {"kind": "local"}, pid=pid)


# ---- versions -------------------------------------------------------------------------


def test_the_version_is_the_installed_metadata():
    assert jqref.__version__ == importlib.metadata.version("jqref")
    assert jqref.__version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_without_metadata_the_version_says_so():
    # A source tree on the path, not installed (as PYTHONPATH=/src in the testbeds).
    script = (
        "import importlib.metadata as m\n"
        "version = m.version\n"
        "def without_jqref(name):\n"
        "    if name == 'jqref':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return version(name)\n"
        "m.version = without_jqref\n"
        "import jqref\n"
        "print(jqref.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout == "0+unknown\n", done.stderr


def test_version_names_jqref_python_and_distributed(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith(
        f"jqref {jqref.__version__} (Python {sys.version.split()[0]}, "
        f"distributed {importlib.metadata.version('distributed')})"
    )


def test_the_installed_command_answers_version():
    for argv in (
        [sys.executable, "-m", "jqref", "--version"],
        [str(pathlib.Path(sys.executable).parent / "jqref"), "--version"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"jqref {jqref.__version__} "), done.stdout


def test_a_distributed_newer_than_the_one_checked_is_named_with_it(monkeypatch, capsys):
    checked = compat_versions.DISTRIBUTED_CHECKED
    assert compat_versions.untested_distributed(checked) is None
    assert compat_versions.untested_distributed("2000.1.0") is None  # older: the dependency bound refuses it
    message = compat_versions.untested_distributed("2099.1.0")
    assert "distributed 2099.1.0 is installed" in message and f"checked against distributed {checked}" in message
    assert "Client._reconnect" in message and f"distributed=={checked}" in message

    monkeypatch.setattr(compat_versions, "installed_distributed", lambda: "2099.1.0")
    monkeypatch.setattr(compat_versions, "_warned", False)
    with pytest.warns(compat_versions.UntestedDistributedWarning, match="distributed 2099.1.0 is installed"):
        assert compat_versions.warn_if_untested_distributed()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compat_versions.warn_if_untested_distributed()  # once per process
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "\nwarning: distributed 2099.1.0 is installed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("newer", "older"),
    [
        ("2026.8.1", "2026.8.0"),
        ("2026.10.0", "2026.9.0"),
        ("2026.8.1.dev3+g12ab", "2026.8.0"),
        ("2027.1.0", "2026.12.3"),
        ("2026.8.0", "not a version"),
    ],
)
def test_releases_compare_by_number(newer, older):
    assert compat_versions.release(newer) > compat_versions.release(older)


@pytest.mark.parametrize(
    ("a", "b"), [("2026.8", "2026.8.0"), ("2026.8.0+local", "2026.8.0"), ("2026.8.0rc1", "2026.8.0")]
)
def test_releases_that_are_the_same_release(a, b):
    assert compat_versions.release(a) == compat_versions.release(b)


def test_the_distributed_checked_is_the_one_locked_and_the_lower_bound():
    lock = (REPO / "requirements" / "lock.txt").read_text()
    assert re.search(rf"^distributed=={re.escape(compat_versions.DISTRIBUTED_CHECKED)}$", lock, re.M)
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"distributed>={compat_versions.DISTRIBUTED_CHECKED}" in dependencies


# ---- help -----------------------------------------------------------------------------


def subcommands():
    action = next(a for a in parser()._actions if a.dest == "command")
    return action.choices


def test_every_command_has_help_and_a_description(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert set(subcommands()) >= {"list", "status", "cleanup"}
    for name, sub in subcommands().items():
        assert re.search(rf"^\s+{name}\s+\S", top, re.M), f"{name} has no line in jqref --help"
        assert sub.description and len(sub.description) > 80, f"{name} has no description"
        with pytest.raises(SystemExit) as exit:
            main([name, "--help"])
        assert exit.value.code == 0
        out = capsys.readouterr().out
        first = sub.description.split("\n")[0]
        assert first in out, f"jqref {name} --help does not show its description"
    assert "--dry-run" in subcommands()["cleanup"].format_help()


# ---- cleanup --dry-run ----------------------------------------------------------------


def test_cleanup_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path, state_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cancelled = tmp_path / "cancel-ran"
    key = tmp_path / "worker.key"
    key.write_text("a stand-in for the workers' key\n")
    orphan = record(["touch", str(cancelled)], pid=dead_pid())
    orphan.worker_files = {"tls_worker_key": str(key)}
    orphan.save({"7": "w-0", "8": "w-1"})
    alive = record(["touch", str(cancelled)], pid=os.getpid())
    alive.save({"9"})
    session = record(["touch", str(cancelled)], pid=dead_pid())
    session.session = {"cluster_class": "jqref.slurm.SLURMCluster", "directory": ".jqref/sessions/s1", "started": 0}
    session.save({"12"})
    partial = state_dir / ".tmp-abandoned"
    partial.write_text('{"job_cl')
    os.utime(partial, (0, 0))
    before = sorted(os.listdir(state_dir))

    def no_runner(description):
        raise AssertionError(f"a dry run made a runner: {description}")

    monkeypatch.setattr("jqref.records.runner_from", no_runner)

    assert main(["cleanup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        f"{orphan.id}: would cancel 2 job(s) on {socket.gethostname()}: touch {cancelled} 7 8; remove the "
        f"files the jobs read on {socket.gethostname()}: {key}; remove its record {orphan.path}"
    ) in out
    assert f"{session.id}: left alone: a detached session one can attach to" in out
    assert alive.id not in out
    assert f"would remove {partial}: a record whose writing never finished" in out
    assert out.rstrip().endswith("dry run: nothing was cancelled, stopped or removed")

    assert main(["cleanup", "-n", session.id]) == 0
    out = capsys.readouterr().out
    assert f"{session.id}: would stop its detached scheduler (state in .jqref/sessions/s1 on " in out
    assert f"cancel 1 job(s) on {socket.gethostname()}: touch {cancelled} 12" in out

    assert main(["cleanup", "--dry-run", "--all"]) == 0
    assert f"{alive.id}: would cancel 1 job(s)" in capsys.readouterr().out

    assert sorted(os.listdir(state_dir)) == before
    assert not cancelled.exists() and key.exists() and partial.exists()
    assert sorted(r.id for r in load_records().found) == sorted([orphan.id, alive.id, session.id])


def test_cleanup_dry_run_fails_as_the_cleanup_would_for_what_it_cannot_do(state_dir, capsys):
    alive = record(["true"], pid=os.getpid())
    alive.save({"9"})
    broken = record(["true"], pid=dead_pid())
    broken.save({"7"})
    broken.path.write_text("{")
    assert main(["cleanup", "--dry-run", "nope", alive.id]) == 1
    err = capsys.readouterr().err
    assert "nope: no such record" in err and f"{alive.id}: left alone: its process {os.getpid()}@" in err
    assert main(["cleanup", "--dry-run"]) == 1
    assert f"{broken.id}: cannot clean up: its record {broken.path} cannot be read" in capsys.readouterr().err
    assert broken.path.read_text() == "{"


def test_what_the_dry_run_said_is_what_cleanup_does(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cancelled = tmp_path / "cancel-ran"
    orphan = record(["touch", str(cancelled)], pid=dead_pid())
    orphan.save({"7"})
    assert main(["cleanup", "-n"]) == 0 and not cancelled.exists()
    assert f"touch {cancelled} 7" in capsys.readouterr().out
    assert main(["cleanup"]) == 0
    assert cancelled.exists() and (tmp_path / "7").exists() and load_records().found == []


# ---- status ---------------------------------------------------------------------------


def test_status_shows_jobs_worker_names_destination_age_and_process(state_dir, capsys):
    ssh = {
        "kind": "ssh",
        "destination": "alice@login",
        "config_file": "~/.ssh/config",
        "known_hosts": None,
        "identity_file": None,
        "login_shell": False,
    }
    orphan = record(["scancel"], pid=dead_pid(), runner=ssh)
    orphan.save({"7": "SLURMCluster-0", "8": "SLURMCluster-1"})
    alive = record(["qdel"], pid=os.getpid(), job_class="jqref.sge.SGEJob")
    alive.save(["31"])  # ids alone: no worker names recorded
    elsewhere = record(["scancel"], pid=1)
    elsewhere.host = "another-host"
    elsewhere.save({})

    assert main(["status", orphan.id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{orphan.id}: SLURM cluster\n")
    assert f"record:       {orphan.path}" in out
    assert re.search(r"last written: \d+ s ago", out)
    assert f"pid {orphan.pid} on {socket.gethostname()}: gone (its jobs are orphaned: jqref cleanup {orphan.id}" in out
    assert "over SSH on alice@login (ssh config ~/.ssh/config); cancelled with scancel" in out
    assert re.search(r"jobs: +2\n +7 +SLURMCluster-0\n +8 +SLURMCluster-1", out)
    assert "state:" not in out

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert all(f"{r.id}: " in out for r in (orphan, alive, elsewhere))
    assert f"{alive.id}: SGE cluster" in out and f"pid {os.getpid()} on {socket.gethostname()}: runs" in out
    assert f"on {socket.gethostname()} itself (no SSH); cancelled with qdel" in out
    assert re.search(r"31 +\(worker name not recorded\)", out)
    assert "pid 1 on another-host: another host, so whether it runs cannot be told from here" in out
    assert "jobs:         0 (none)" in out


def test_status_of_a_detached_session_shows_its_state_directory_and_how_to_attach(capsys):
    ssh = {"kind": "ssh", "destination": "login", "config_file": None}
    session = record(["scancel"], pid=dead_pid(), runner=ssh)
    session.session = {
        "cluster_class": "jqref.slurm.SLURMCluster",
        "directory": f".jqref/sessions/{session.id}",
        "started": 0,
    }
    session.worker_files = {"tls_worker_key": f".jqref/sessions/{session.id}/worker.key"}
    session.save({"12": "SLURMCluster-3"})
    assert main(["status", session.id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{session.id}: SLURM detached session\n")
    assert f"state:        ~/.jqref/sessions/{session.id} on login" in out
    assert f"attach:       SLURMCluster.attach('{session.id}') (attachable now)" in out
    assert re.search(r"started: +[\d.]+ days ago", out)
    assert f"job files:    .jqref/sessions/{session.id}/worker.key" in out
    assert "(its jobs are orphaned" not in out  # a session's scheduler cancels them when left idle


def test_status_of_records_that_do_not_exist_or_cannot_be_read_fails_naming_them(state_dir, capsys):
    assert main(["status"]) == 0
    assert capsys.readouterr().out == f"no clusters recorded in {state_dir}\n"
    broken = record(["true"], pid=dead_pid())
    broken.save({"7"})
    broken.path.write_text("[]")
    assert main(["status", "nope"]) == 1
    assert f"nope: no such record in {state_dir}" in capsys.readouterr().err
    assert main(["status"]) == 1
    assert f"{broken.id}: its record {broken.path} cannot be read (not a jqref record" in capsys.readouterr().err


def test_dask_finds_jqref_and_shows_its_defaults():
    """`dask` loads jqref's command, which registers its defaults with dask."""
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=120)
    shown = run([sys.executable, "-m", "dask", "config", "get", "jqref.slurm.walltime"])
    assert shown.returncode == 0 and shown.stdout.strip() == "00:30:00", shown
    version = run([sys.executable, "-m", "dask", "jqref", "--version"])
    assert version.returncode == 0 and version.stdout.startswith("jqref "), version


def test_registered_defaults_do_not_hide_a_dask_jobqueue_section():
    """jqref's defaults are in dask's config now; a `jobqueue:` section a site
    wrote still beats them, as a `jqref:` section beats both."""
    from jqref.slurm import SLURMJob

    with dask.config.set({"jobqueue.slurm.walltime": "01:00:00", "jobqueue.slurm.cores": 3}):
        job = SLURMJob(None, "w", memory="1GiB")
        assert (job.walltime, job.cores) == ("01:00:00", 3)
        with dask.config.set({"jqref.slurm.cores": 5}):
            assert SLURMJob(None, "w", memory="1GiB").cores == 5
