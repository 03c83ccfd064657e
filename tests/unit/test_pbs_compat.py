"""The PBS testbed's compat layer (docker/pbs/compat/pbs_compat.py): PBS
memory sizes converted for Slurm, and qstat -x / -F json built from Slurm's
records. The layer runs in the testbed's image; here its pieces run alone,
on records shaped as Slurm 24.11 gives them."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pbs_compat", ROOT / "docker" / "pbs" / "compat" / "pbs_compat.py")
compat = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compat)


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("104857600", 104857600),  # a bare number is bytes
        ("512b", 512),
        ("1kb", 1024),
        ("100mb", 100 * 1024**2),
        ("100MB", 100 * 1024**2),
        ("27GB", 27 * 1024**3),
        ("2Gb", 2 * 1024**3),
        ("1tb", 1024**4),
        ("1pb", 1024**5),
        ("3w", 24),  # words of 8 bytes
        ("1kw", 8192),
        ("2MW", 16 * 1024**2),
        (" 7 ", 7),
        ("10m", 10 * 1024**2),  # the b may be left out: the same meaning to Slurm
        ("10G", 10 * 1024**3),
    ],
)
def test_pbs_sizes_are_read_in_bytes(text, nbytes):
    assert compat.parse_size(text) == nbytes


@pytest.mark.parametrize("text", ["", "1.5gb", "mb", "10x", "-1", "1 gb", "1gbb", "1e6"])
def test_what_is_not_a_pbs_size_is_refused(text):
    with pytest.raises(ValueError):
        compat.parse_size(text)


@pytest.mark.parametrize(
    ("nbytes", "slurm"),
    [
        (104857600, "100mb"),
        (100 * 1024**2 + 1, "101mb"),  # Slurm counts whole megabytes: rounded up, never less than asked
        (1, "1mb"),
        (0, "1mb"),  # not 0, which is a whole node's memory to Slurm
        (27 * 1024**3, "27648mb"),
    ],
)
def test_sizes_reach_slurm_in_whole_megabytes(nbytes, slurm):
    assert compat.slurm_size(nbytes) == slurm


def test_sizes_are_printed_in_the_largest_whole_unit():
    assert compat.pbs_size(1000 * 1024**2) == "1000mb"
    assert compat.pbs_size(1024**3) == "1gb"
    assert compat.pbs_size(1500) == "1500b"
    assert compat.pbs_size(1536 * 1024) == "1536kb"
    assert compat.pbs_size(0) == "0b"


@pytest.mark.parametrize(
    ("resources", "converted"),
    [
        # What PSI/J writes: the chunk's mem in bytes.
        ("select=1:ncpus=1:mpiprocs=1:mem=104857600", "select=1:ncpus=1:mpiprocs=1:mem=100mb"),
        ("mem=104857600,walltime=00:10:00", "mem=100mb,walltime=00:10:00"),
        ("select=2:ncpus=2:mem=1gb+1:ncpus=1:mem=512kb", "select=2:ncpus=2:mem=1024mb+1:ncpus=1:mem=1mb"),
        ("vmem=1GB,pmem=8kw,pvmem=1", "vmem=1024mb,pmem=1mb,pvmem=1mb"),
        ("MEM=2gb", "MEM=2048mb"),
        # Not memory, or not a PBS size: left as written, for Slurm to judge.
        ("walltime=01:00:00,ncpus=4", "walltime=01:00:00,ncpus=4"),
        ("mem=1.5gb", "mem=1.5gb"),
        ("nodes=1:ppn=2", "nodes=1:ppn=2"),
    ],
)
def test_memory_in_resource_lists_is_converted(resources, converted):
    assert compat.convert_resource_list(resources) == converted


def test_only_the_directive_block_of_a_script_is_converted():
    script = (
        "#!/bin/bash\n"
        '#PBS -N="psij-job"\n'
        "#PBS -l select=1:ncpus=1:mpiprocs=1:mem=104857600\n"
        "\n"
        "# a comment\n"
        "#PBS -q workq -l mem=1gb -l walltime=00:01:00\n"
        '#PBS -l "mem=2048"\n'
        "echo hello\n"
        "#PBS -l mem=5\n"  # after the first command: sbatch does not read it, so neither do we
    )
    assert compat.convert_script(script) == (
        "#!/bin/bash\n"
        '#PBS -N="psij-job"\n'
        "#PBS -l select=1:ncpus=1:mpiprocs=1:mem=100mb\n"
        "\n"
        "# a comment\n"
        "#PBS -q workq -l mem=1024mb -l walltime=00:01:00\n"
        '#PBS -l "mem=1mb"\n'
        "echo hello\n"
        "#PBS -l mem=5\n"
    )


def test_a_script_without_sizes_is_unchanged():
    script = "#!/bin/bash\r\n#PBS -N x\r\n#PBS -l select=1:ncpus=2:mem=27GB\r\nsleep 1\r\n"
    assert compat.convert_script(script) == script.replace("27GB", "27648mb")
    plain = "#!/bin/bash\n#PBS -l walltime=00:01:00\ntrue\n"
    assert compat.convert_script(plain) == plain


@pytest.mark.parametrize(
    ("args", "converted", "script_at"),
    [
        (["-N", "x", "-l", "mem=5", "job.sh", "-l", "mem=5"], ["-N", "x", "-l", "mem=1mb", "job.sh", "-l", "mem=5"], 4),
        (["-lmem=2097152", "job.sh"], ["-l", "mem=2mb", "job.sh"], 2),
        (["-j", "oe", "-W", "block=true", "job.sh"], ["-j", "oe", "-W", "block=true", "job.sh"], 4),
        (["-j", "-V", "job.sh"], ["-j", "-V", "job.sh"], 2),
        (["-pe", "smp", "2", "job.sh"], ["-pe", "smp", "2", "job.sh"], 3),
        (["-l", "walltime=1:00", "--", "job.sh"], ["-l", "walltime=1:00", "--", "job.sh"], 3),
        (["-N", "x"], ["-N", "x"], None),
    ],
)
def test_qsub_arguments_are_converted_up_to_the_script(args, converted, script_at):
    assert compat.convert_qsub_args(args) == (converted, script_at)


@pytest.fixture
def fake_qsub(tmp_path, monkeypatch):
    """Debian's qsub replaced by a script that records its arguments and the script it was given."""
    log = tmp_path / "qsub.log"
    fake = tmp_path / "qsub.torque"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "script = sys.argv[-1]\n"
        f"json.dump({{'args': sys.argv[1:], 'text': open(script).read()}}, open({str(log)!r}, 'w'))\n"
        "print('42')\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(compat, "TORQUE_QSUB", str(fake))
    return log


def test_qsub_submits_a_converted_copy_under_the_same_name_and_removes_it(fake_qsub, tmp_path, capfd):
    script = tmp_path / "work" / "a4d4.job"
    script.parent.mkdir()
    script.write_text("#!/bin/bash\n#PBS -l select=1:ncpus=1:mem=104857600\ntrue\n")
    assert compat.qsub_main(["-l", "walltime=00:01:00", str(script)]) == 0
    assert capfd.readouterr().out == "42\n"
    seen = json.loads(fake_qsub.read_text())
    copy = Path(seen["args"][-1])
    assert copy.name == "a4d4.job" and copy != script  # Debian's qsub names the job after it
    assert seen["text"] == "#!/bin/bash\n#PBS -l select=1:ncpus=1:mem=100mb\ntrue\n"
    assert not copy.exists() and not copy.parent.exists()
    assert script.read_text().endswith("mem=104857600\ntrue\n")  # the user's file is untouched


def test_qsub_passes_a_script_without_pbs_sizes_as_it_is(fake_qsub, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#PBS -l select=1:ncpus=2\n#PBS -l walltime=00:01:00\ntrue\n")
    compat.qsub_main(["-N", "x", str(script)])
    assert json.loads(fake_qsub.read_text())["args"] == ["-N", "x", str(script)]


# ---------------------------------------------------------------- exit status


@pytest.mark.parametrize(
    ("state", "started", "code", "signal", "status"),
    [
        ("COMPLETED", True, 0, None, 0),
        ("FAILED", True, 1, None, 1),
        ("FAILED", True, 127, None, 127),
        ("FAILED", True, 0, 9, 265),  # killed by a signal: 256 + signal
        ("OUT_OF_MEMORY", True, 0, 9, 265),
        ("CANCELLED", True, 0, 15, 265),  # qdel of a running job: what PBS Pro reports (and PSI/J reads as cancelled)
        ("CANCELLED", False, 0, None, None),  # deleted before it ran: no exit status
        ("TIMEOUT", True, 0, 15, 271),  # over its walltime
        ("NODE_FAIL", True, 0, None, -1),
        ("BOOT_FAIL", False, 0, None, -1),
        ("FAILED", False, 0, None, -1),  # could not be started (e.g. its directory is missing)
    ],
)
def test_exit_status_as_pbs_pro_reports_it(state, started, code, signal, status):
    assert compat.exit_status(state, started, code, signal) == status


# ---------------------------------------------------------------- records and the PBS view


def slurm_job(job_id=7, state=("COMPLETED",), exit_code=0, signal=None, started=True, **extra):
    """One job as `scontrol --json show job` (data_parser v0.0.42) gives it."""

    def number(value):
        return {"set": value is not None, "infinite": False, "number": value or 0}

    job = {
        "job_id": job_id,
        "name": "psij.job",
        "user_name": "dask",
        "user_id": 1000,
        "job_state": list(state),
        "state_reason": "None",
        "exit_code": {
            "status": ["SUCCESS"],
            "return_code": number(exit_code),
            "signal": {"id": number(signal), "name": ""},
        },
        "partition": "workq",
        "account": "",
        "allocating_node": "login",
        "submit_time": number(1796590403),
        "eligible_time": number(1796590403),
        "start_time": number(1796590404 if started else 0),
        "end_time": number(1796590464),
        "batch_host": "compute1" if started else "",
        "cpus": number(2),
        "node_count": number(1),
        "memory_per_node": number(100),
        "memory_per_cpu": number(None),
        "time_limit": number(10),
        "standard_output": "/home/dask/psij.job.o7",
        "standard_error": "/home/dask/psij.job.e7",
        "current_working_directory": "/home/dask",
        "requeue": False,
        "restart_cnt": 0,
        "hold": False,
        "job_resources": {"nodes": {"allocation": [{"name": "compute1", "cpus": {"count": 2}}]}} if started else {},
    }
    job.update(extra)
    return job


def test_a_finished_job_in_pbs_pros_json_layout():
    record = compat.record_from_slurm_json(slurm_job(exit_code=3))
    report = json.loads(compat.render_json({"7": compat.pbs_attributes(record, "login")}, "login", "v", 1796590500.7))
    assert list(report) == ["timestamp", "pbs_version", "pbs_server", "Jobs"]
    assert report["timestamp"] == 1796590500 and report["pbs_server"] == "login"
    job = report["Jobs"]["7"]
    assert job["Job_Name"] == "psij.job" and job["Job_Owner"] == "dask@login"
    assert job["job_state"] == "F" and job["queue"] == "workq"
    assert job["Exit_status"] == 3 and isinstance(job["Exit_status"], int)
    assert job["Resource_List"] == {
        "ncpus": 2,
        "nodect": 1,
        "mem": "100mb",
        "select": "1:ncpus=2:mem=100mb",
        "walltime": "00:10:00",
    }
    assert job["resources_used"] == {"ncpus": 2, "walltime": "00:01:00"}
    assert job["exec_host"] == "compute1/0*2"
    assert job["Output_Path"] == "login:/home/dask/psij.job.o7"
    assert job["stime"] == compat._ctime(1796590404) and job["obittime"] == compat._ctime(1796590464)


@pytest.mark.parametrize(
    ("state", "reason", "hold", "letter"),
    [
        (["PENDING"], "Resources", False, "Q"),
        (["PENDING"], "JobHeldUser", True, "H"),
        (["RUNNING"], "None", False, "R"),
        (["RUNNING", "COMPLETING"], "None", False, "E"),
        (["COMPLETED", "COMPLETING"], "None", False, "E"),  # still ending: no exit status yet in PBS either
        (["SUSPENDED"], "None", False, "S"),
        (["CANCELLED"], "None", False, "F"),
        (["TIMEOUT"], "None", False, "F"),
    ],
)
def test_slurm_states_as_pbs_letters(state, reason, hold, letter):
    record = compat.record_from_slurm_json(slurm_job(state=state, state_reason=reason, hold=hold))
    assert compat.pbs_state(record) == letter


def test_a_queued_job_has_no_exit_status_and_says_why_it_waits():
    record = compat.record_from_slurm_json(slurm_job(state=["PENDING"], started=False, state_reason="Resources"))
    attrs = compat.pbs_attributes(record, "login")
    assert attrs["job_state"] == "Q"
    assert "Exit_status" not in attrs and "exec_host" not in attrs and "stime" not in attrs
    assert attrs["comment"] == "Not Running: Resources"


def test_a_job_deleted_while_running_reports_265_and_one_deleted_while_queued_none():
    running = compat.record_from_slurm_json(slurm_job(state=["CANCELLED"], signal=15))
    queued = compat.record_from_slurm_json(slurm_job(state=["CANCELLED"], started=False))
    assert compat.pbs_attributes(running, "login")["Exit_status"] == 265
    assert "Exit_status" not in compat.pbs_attributes(queued, "login")


def test_the_full_text_format_names_resources_with_a_dot():
    record = compat.record_from_slurm_json(slurm_job())
    text = compat.render_full({"7": compat.pbs_attributes(record, "login")})
    assert text.startswith("Job Id: 7\n    Job_Name = psij.job\n")
    assert "    Resource_List.select = 1:ncpus=2:mem=100mb\n" in text
    assert "    job_state = F\n" in text and "    Exit_status = 0\n" in text
    assert text.endswith("\n\n")


def test_the_default_table_lists_finished_jobs_with_state_f():
    record = compat.record_from_slurm_json(slurm_job())
    lines = compat.render_table({"7": compat.pbs_attributes(record, "login")}).splitlines()
    assert lines[0].split() == ["Job", "id", "Name", "User", "Time", "Use", "S", "Queue"]
    assert lines[2].split() == ["7", "psij.job", "dask", "--", "F", "workq"]


# ---------------------------------------------------------------- qstat


@pytest.mark.parametrize(
    ("args", "answered_here"),
    [
        (["-f", "-F", "json", "-x", "12"], True),
        (["-fx", "12"], True),
        (["-x"], True),
        (["-H"], True),
        (["-f", "-Fjson"], True),
        # Everything else is Debian's qstat, output unchanged (jqref parses it).
        (["-f", "12"], False),
        ([], False),
        (["-u", "xavier"], False),
        (["-uxavier"], False),
        (["-Q", "workq"], False),
        (["-B"], False),
    ],
)
def test_only_calls_with_x_h_or_f_json_are_answered_by_the_layer(args, answered_here):
    assert compat.wants_this_layer(args) is answered_here


def test_qstat_options():
    options = compat.parse_qstat_args(["-f", "-F", "json", "-x", "12", "13.login"])
    assert options["full"] and options["format"] == "json" and options["history"]
    assert options["ids"] == ["12", "13.login"]
    assert compat.parse_qstat_args(["-fxFjson", "-w"])["format"] == "json"
    assert compat.parse_qstat_args(["-x", "-u", "dask,root@login"])["users"] == {"dask", "root"}
    assert compat.parse_qstat_args(["-H"])["only_finished"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-F", "json"], "-F json goes with -f"),
        (["-f", "-F", "dsv"], "only -F json"),
        (["-x", "-a"], "-a together with -x"),
        (["-f", "-F"], "needs a value"),
    ],
)
def test_what_the_layer_does_not_implement_is_refused_with_a_reason(args, message):
    with pytest.raises(compat.UsageError, match=message):
        compat.parse_qstat_args(args)


@pytest.fixture
def records():
    jobs = [
        slurm_job(5, state=["COMPLETED"]),
        slurm_job(6, state=["RUNNING"], user_name="root"),
        slurm_job(10, state=["PENDING"], started=False),
    ]
    return {str(job["job_id"]): compat.record_from_slurm_json(job) for job in jobs}


def test_a_finished_job_needs_x_as_in_pbs_pro(records):
    options = compat.parse_qstat_args(["-f", "-F", "json", "5", "6"])
    chosen, errors = compat.select_jobs(records, options)
    assert list(chosen) == ["6"]
    assert errors == [("5", "qstat: 5 Job has finished, use -x or -H to obtain historical job information", 35)]
    chosen, errors = compat.select_jobs(records, compat.parse_qstat_args(["-f", "-F", "json", "-x", "5", "6.login"]))
    assert list(chosen) == ["5", "6"] and errors == []


def test_unknown_job_ids_exit_153_and_the_known_ones_are_still_shown(records):
    chosen, errors = compat.select_jobs(records, compat.parse_qstat_args(["-fx", "999", "10"]))
    assert list(chosen) == ["10"]
    assert errors == [("999", "qstat: Unknown Job Id 999", 153)]


def test_all_jobs_in_id_order_filtered_by_user_and_history(records):
    assert list(compat.select_jobs(records, compat.parse_qstat_args(["-x"]))[0]) == ["5", "6", "10"]
    assert list(compat.select_jobs(records, compat.parse_qstat_args(["-f", "-F", "json"]))[0]) == ["6", "10"]
    assert list(compat.select_jobs(records, compat.parse_qstat_args(["-x", "-u", "dask"]))[0]) == ["5", "10"]
    assert list(compat.select_jobs(records, compat.parse_qstat_args(["-H"]))[0]) == ["5"]


def test_qstat_json_call_end_to_end(records, monkeypatch, capsys, tmp_path):
    live = {key: value for key, value in records.items() if key != "5"}  # 5 is gone from Slurm: history only
    monkeypatch.setattr(compat, "load_live", lambda: (live, "24.11.5"))
    monkeypatch.setattr(compat, "load_history", lambda: {"5": records["5"]})
    monkeypatch.setattr(compat, "server_name", lambda: "login")
    assert compat.qstat_main(["-f", "-F", "json", "-x", "5", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pbs_version"] == "jqref-compat (Slurm 24.11.5)"
    assert {job_id: job["job_state"] for job_id, job in report["Jobs"].items()} == {"5": "F", "6": "R"}
    assert report["Jobs"]["5"]["Exit_status"] == 0
    assert compat.qstat_main(["-f", "-F", "json", "5"]) == 35
    assert compat.qstat_main(["-f", "-F", "json", "77"]) == 153
    assert "Unknown Job Id 77" in capsys.readouterr().err
    assert compat.qstat_main(["-x", "-s"]) == 2


# ---------------------------------------------------------------- history


JOBCOMP_ENV = {
    # What slurmctld's jobcomp/script gives its script (Slurm 24.11), for a job that exited 2.
    "JOBID": "31",
    "JOBNAME": "psij.job",
    "JOBSTATE": "FAILED",
    "EXITCODE": "2:0",
    "DERIVED_EC": "0:0",
    "UID": "1000",
    "USERNAME": "dask",
    "PARTITION": "workq",
    "ACCOUNT": "",
    "LIMIT": "00:10:00",
    "SUBMIT": "1796590403",
    "START": "1796590404",
    "END": "1796590410",
    "NODES": "compute[1-2]",
    "NODECNT": "2",
    "PROCS": "4",
    "WORK_DIR": "/home/dask",
    "STDOUT": "/home/dask/psij.job.o%A",  # as jobcomp gives them: patterns
    "STDERR": "/home/dask/%x.e%j",
    "BATCH": "yes",
    "GID": "1000",
    "PATH": "/usr/bin:/bin",
}


def test_the_recorder_keeps_a_finished_job_that_qstat_x_reads_back(tmp_path):
    assert compat.record_main(JOBCOMP_ENV, tmp_path) == 0
    kept = json.loads((tmp_path / "31.json").read_text())
    assert kept["EXITCODE"] == "2:0" and "PATH" not in kept
    assert oct((tmp_path / "31.json").stat().st_mode & 0o777) == "0o644"
    record = compat.load_history(tmp_path)["31"]
    attrs = compat.pbs_attributes(record, "login")
    assert attrs["job_state"] == "F" and attrs["Exit_status"] == 2
    assert attrs["exec_host"] == "compute1/0*2+compute2/0*2"
    assert attrs["Resource_List"]["nodect"] == 2 and attrs["Resource_List"]["walltime"] == "00:10:00"
    assert attrs["Output_Path"] == "login:/home/dask/psij.job.o31"
    assert attrs["Error_Path"] == "login:/home/dask/psij.job.e31"


@pytest.mark.parametrize(
    ("limit", "minutes"),
    [("00:10:00", 10), ("1-02:00:00", 1560), ("05:30", 5), ("90", 90), ("UNLIMITED", None), ("", None)],
)
def test_jobcomp_time_limits(limit, minutes):
    assert compat._limit_minutes(limit) == minutes


def test_the_recorder_forgets_records_older_than_two_weeks_and_ignores_odd_ids(tmp_path):
    old = tmp_path / "3.json"
    old.write_text("{}")
    os.utime(old, (0, 0))
    compat.record_main(JOBCOMP_ENV, tmp_path)
    assert not old.exists()
    assert compat.record_main({**JOBCOMP_ENV, "JOBID": "../x"}, tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["31.json"]
    (tmp_path / "bad.json").write_text("not json")
    assert list(compat.load_history(tmp_path)) == ["31"]


def test_hostlists_are_spelt_out():
    assert compat._expand_hostlist("compute[1-2]") == ["compute1", "compute2"]
    assert compat._expand_hostlist("n[01-02,05],login") == ["n01", "n02", "n05", "login"]
    assert compat._expand_hostlist("compute1") == ["compute1"]


def test_no_answer_from_slurmctld_is_an_error_not_an_empty_queue(monkeypatch, capsys):
    # scontrol --json exits 0 with no jobs when the controller cannot be reached; only its time tells.
    silent = {"jobs": [], "last_update": {"set": True, "infinite": False, "number": 0}, "errors": [], "meta": {}}

    def scontrol(argv, **kwargs):
        return compat.subprocess.CompletedProcess(argv, 0, json.dumps(silent), "scontrol: error: Unable to contact")

    monkeypatch.setattr(compat.subprocess, "run", scontrol)
    with pytest.raises(RuntimeError, match="Unable to contact"):
        compat.load_live()
    assert compat.qstat_main(["-f", "-F", "json", "-x", "5"]) == 1
    assert "cannot reach the batch server" in capsys.readouterr().err
