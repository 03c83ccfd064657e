"""Job records and the jqref command that cleans up after crashed clients."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from distributed.security import Security

from jqref.__main__ import main
from jqref.placement.detached import certificate_fingerprint
from jqref.placement.session_keeper import process_start
from jqref.records import JobRecord, RecordError, load_records, runner_from


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    return tmp_path / "jqref"


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def record(cancel_command, pid):
    return JobRecord(job_class="jqref.slurm.SLURMJob", cancel_command=cancel_command, runner={"kind": "local"}, pid=pid)


def found_ids():
    return [r.id for r in load_records().found]


def test_saved_private_and_removed(state_dir):
    # A directory and a record others could read, as an older version or a umask may have left them.
    state_dir.mkdir(mode=0o755)
    state_dir.chmod(0o755)
    r = record(["scancel"], pid=dead_pid())
    r.path.write_text("{}")
    r.path.chmod(0o644)
    r.save({"2", "1"})
    assert json.loads(r.path.read_text())["jobs"] == ["1", "2"]
    assert (state_dir.stat().st_mode & 0o777, r.path.stat().st_mode & 0o777) == (0o700, 0o600)
    assert found_ids() == [r.id] and load_records().found[0].orphaned
    r.remove()
    assert load_records().found == [] and os.listdir(state_dir) == []


def test_a_records_directory_that_cannot_be_made_is_an_error_naming_it_and_what_it_means(tmp_path, monkeypatch):
    (tmp_path / "not-a-directory").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "not-a-directory"))
    r = record(["scancel"], pid=dead_pid())
    with pytest.raises(
        RecordError,
        match=f"jobs of this cluster could not be recorded at {r.path}: .*"
        "if this process dies they must be cancelled by hand: scancel 7",
    ):
        r.save({"7"})


def test_a_records_directory_of_another_user_is_refused(state_dir, monkeypatch):
    state_dir.mkdir()
    monkeypatch.setattr(os, "getuid", lambda: state_dir.stat().st_uid + 1)
    with pytest.raises(RecordError, match=f"{state_dir} belongs to user id .*set XDG_STATE_HOME"):
        record(["scancel"], pid=dead_pid()).save({"7"})


def test_a_full_disk_keeps_the_last_record_whole_leaves_no_partial_one_and_says_so(state_dir):
    # A real failed write: the file size limit makes writing a larger record fail as a full disk does.
    r = record(["scancel"], pid=dead_pid())
    r.save({"1"})
    script = textwrap.dedent(f"""
        import resource, signal
        from jqref.records import JobRecord, RecordError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        record = JobRecord(**{json.loads(r.path.read_text())!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        try:
            record.save([str(job) for job in range(10000)])
        except RecordError as e:
            print(e)
    """)
    failed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_STATE_HOME": str(state_dir.parent)},
    )
    assert f"could not be recorded at {r.path}: File too large" in failed.stdout, failed.stderr
    assert json.loads(r.path.read_text())["jobs"] == ["1"]
    assert os.listdir(state_dir) == [r.path.name]


def test_a_live_process_is_not_orphaned():
    assert not record(["scancel"], pid=subprocess.os.getpid()).orphaned


def test_a_cluster_record_has_no_detached_session_to_read():
    r = record(["scancel"], pid=dead_pid())
    with pytest.raises(LookupError, match=f"record {r.id} is not a detached session's"):
        r.cluster_class()
    r.session = {"cluster_class": "jqref.slurm.SLURMCluster", "directory": "x", "started": 0}
    assert r.cluster_class().__name__ == "SLURMCluster"


def test_cleanup_cancels_orphans_only_and_forgets_them(capsys):
    orphan = record(["echo", "cancel"], pid=dead_pid())
    orphan.save({"7", "8"})
    alive = record(["echo", "cancel"], pid=subprocess.os.getpid())
    alive.save({"9"})
    assert main(["cleanup"]) == 0
    assert "cancelled 2 job(s): 7 8" in capsys.readouterr().out
    assert found_ids() == [alive.id]


def test_cleanup_removes_the_workers_credentials_a_crashed_client_left(tmp_path, capsys):
    key, certificate = tmp_path / "worker.key", tmp_path / "worker.cert"
    key.write_text("a stand-in for the workers' key\n")
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")
    orphan = record(["echo", "cancel"], pid=dead_pid())
    orphan.worker_files = {"tls_worker_key": str(key), "tls_worker_cert": str(certificate)}
    orphan.save({"7"})
    assert main(["cleanup", orphan.id]) == 0
    assert not key.exists() and not certificate.exists()
    assert found_ids() == []


def test_cleanup_reports_a_failed_cancel_and_keeps_the_record(capsys):
    r = record(["false"], pid=dead_pid())
    r.save({"7"})
    assert main(["cleanup", r.id]) == 1
    assert "could not cancel" in capsys.readouterr().err
    assert found_ids() == [r.id]


def test_an_unreadable_record_is_listed_as_such_and_cleaning_it_up_fails_naming_it(state_dir, capsys):
    r = record(["echo", "cancel"], pid=dead_pid())
    r.save({"7"})
    r.path.write_text('{"job_class": "jqref.slurm.SLURMJob", "jobs": ["7"')  # cut short
    assert main(["list"]) == 0
    assert f"{r.id}  unreadable: its record {r.path} cannot be read (not JSON" in capsys.readouterr().out
    for argv in (["cleanup", r.id], ["cleanup"]):
        assert main(argv) == 1
        assert f"{r.id}: cannot clean up: its record {r.path} cannot be read (not JSON" in capsys.readouterr().err
    assert r.path.exists()


def test_cleaning_up_a_record_that_does_not_exist_or_whose_process_runs_fails_saying_so(state_dir, capsys):
    alive = record(["echo", "cancel"], pid=os.getpid())
    alive.save({"9"})
    assert main(["cleanup", "nope"]) == 1
    assert f"nope: no such record in {state_dir}" in capsys.readouterr().err
    assert main(["cleanup", alive.id]) == 1
    assert f"{alive.id}: left alone: its process {os.getpid()}@" in capsys.readouterr().err
    assert found_ids() == [alive.id]


def test_a_partial_record_a_dead_process_left_is_listed_and_removed_by_cleanup_a_fresh_one_is_not(state_dir, capsys):
    state_dir.mkdir()
    abandoned, fresh = state_dir / ".tmp-abandoned", state_dir / ".tmp-being-written"
    abandoned.write_text('{"job_cl')
    fresh.write_text('{"job_cl')
    an_hour_ago = time.time() - 3600
    os.utime(abandoned, (an_hour_ago, an_hour_ago))
    assert main(["list"]) == 0
    assert capsys.readouterr().out == f"{abandoned}: a record whose writing never finished (jqref cleanup removes it)\n"
    assert main(["cleanup"]) == 0
    assert f"removed {abandoned}" in capsys.readouterr().out
    assert os.listdir(state_dir) == [fresh.name]


def test_ssh_runner_is_rebuilt_from_its_description(tmp_path):
    config = tmp_path / "config"
    config.write_text("Host login\n  HostName 10.0.0.9\n  User dask\n  Port 2222\n")
    runner = runner_from({"kind": "ssh", "destination": "login", "config_file": str(config)})
    assert (runner.hops[-1].hostname, runner.hops[-1].port, runner.hops[-1].user) == ("10.0.0.9", 2222, "dask")


@pytest.fixture
def stand_in_scheduler():
    """A real process standing in for a session's scheduler."""
    scheduler = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield scheduler
    scheduler.kill()
    scheduler.wait()


def started(pid):
    with open(f"/proc/{pid}/stat") as f:
        return process_start(f.read())


def detached_record(tmp_path, monkeypatch, state):
    """A detached session's record, its state (`state` and the certificate's
    fingerprint) where a detached scheduler keeps it, as one started in `tmp_path` would."""
    monkeypatch.chdir(tmp_path)
    session = tmp_path / ".jqref" / "sessions" / "s1"
    session.mkdir(parents=True)
    certificate = Security.temporary().tls_scheduler_cert
    (session / "state.json").write_text(json.dumps({**state, "certificate": certificate_fingerprint(certificate)}))
    r = record(["echo", "cancel"], pid=dead_pid())
    r.session = {
        "cluster_class": "jqref.slurm.SLURMCluster",
        "directory": ".jqref/sessions/s1",
        "started": 0,
        "security": {"tls_scheduler_cert": certificate},
    }
    r.save({"7": "w-0"})
    return r


def test_a_detached_session_is_listed_as_attachable_and_cleaned_up_only_when_named(
    tmp_path, monkeypatch, capsys, stand_in_scheduler
):
    scheduler = stand_in_scheduler
    r = detached_record(tmp_path, monkeypatch, {"pid": scheduler.pid, "process_start": started(scheduler.pid)})
    assert main(["list"]) == 0
    assert f"attachable: SLURMCluster.attach('{r.id}')" in capsys.readouterr().out
    assert main(["cleanup"]) == 0
    assert found_ids() == [r.id] and scheduler.poll() is None, "an attachable one went"
    assert main(["cleanup", r.id]) == 0
    assert (
        f"cancelled 1 job(s): 7; its detached scheduler (pid {scheduler.pid} on this machine) was stopped"
        in capsys.readouterr().out
    )
    assert scheduler.wait(timeout=10) != 0 and load_records().found == []


def test_a_process_that_took_the_pid_of_a_session_scheduler_killed_outright_is_not_stopped(
    tmp_path, monkeypatch, capsys, stand_in_scheduler
):
    # The scheduler's state outlived it (SIGKILL, a reboot) and its pid is another process's now:
    # the same pid, another start.
    other = stand_in_scheduler
    r = detached_record(tmp_path, monkeypatch, {"pid": other.pid, "process_start": str(int(started(other.pid)) - 1)})
    assert main(["cleanup", r.id]) == 0
    assert (
        f"cancelled 1 job(s): 7; its detached scheduler was gone, so nothing was stopped: pid {other.pid} on "
        "this machine is another process's now; the state it left in .jqref/sessions/s1 removed"
        in capsys.readouterr().out
    )
    time.sleep(0.2)
    assert other.poll() is None, "another process was killed"
    assert not (tmp_path / ".jqref" / "sessions" / "s1").exists() and load_records().found == []


def test_a_session_whose_scheduler_was_killed_outright_is_cleaned_up_at_the_first_try(tmp_path, monkeypatch, capsys):
    gone = dead_pid()
    r = detached_record(tmp_path, monkeypatch, {"pid": gone, "process_start": "1"})
    assert main(["cleanup", r.id]) == 0
    assert f"pid {gone} on this machine no longer runs" in capsys.readouterr().out
    assert not (tmp_path / ".jqref" / "sessions" / "s1").exists() and load_records().found == []


def test_attaching_to_an_unknown_session_names_the_ones_there():
    from jqref.records import session_record

    r = record(["scancel"], pid=dead_pid())
    r.session = {"cluster_class": "jqref.slurm.SLURMCluster", "directory": "x", "started": 0}
    r.save({})
    with pytest.raises(LookupError, match=f"no detached session 'nope'.*sessions there: {r.id}"):
        session_record("nope")
    r.path.write_text("[]")
    with pytest.raises(LookupError, match=f"the record of session '{r.id}', {r.path}, cannot be read: not a jqref"):
        session_record(r.id)


def test_a_session_whose_scheduler_has_another_certificate_is_not_attached_to_or_stopped(tmp_path, monkeypatch):
    from jqref.placement.detached import read_state
    from jqref.runners import LocalRunner

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "state.json").write_text(
        json.dumps({"pid": 1, "certificate": certificate_fingerprint(Security.temporary().tls_scheduler_cert)})
    )
    ours = {"directory": "s", "security": {"tls_scheduler_cert": Security.temporary().tls_scheduler_cert}}
    with pytest.raises(PermissionError, match="does not have this session's certificate"):
        read_state(LocalRunner(), ours)
    with pytest.raises(LookupError, match="gone"):
        read_state(LocalRunner(), {**ours, "directory": "elsewhere"})
