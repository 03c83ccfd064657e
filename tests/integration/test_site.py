"""The testbeds behave like a real centre: accounting that answers (SLURM,
SGE, HTCondor), and on the SLURM testbed limits that refuse or end jobs and a
login node that asks for a one-time password. These check the testbeds
themselves, with the batch system's own commands and a plain SSH client,
not jqref.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time

import paramiko
import pytest

from .conftest import LOGS, ROOT, wait_for

pytestmark = [pytest.mark.schedulers("slurm"), pytest.mark.placement_independent]

#: What sbatch prints when the QOS `limited` (MaxSubmitJobsPerUser=2) refuses a third job.
SUBMIT_LIMIT_ERROR = (
    "sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
    "sbatch: error: Batch job submission failed: "
    "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"
)
#: What sbatch prints for an array with more elements than MaxArraySize=10 allows.
ARRAY_LIMIT_ERROR = "sbatch: error: Batch job submission failed: Invalid job array specification"
#: How each batch system's accounting words the end of a job that exited 0, and of one that exited 3.
ENDINGS = {
    "slurm": ("COMPLETED", "FAILED"),
    "sge": ("exit_status 0", "exit_status 3"),
    "htcondor": ("JobStatus 4 ExitCode 0", "JobStatus 4 ExitCode 3"),
}
#: pam_oath's keyboard-interactive prompt on the login node (user mfa).
OTP_PROMPT = "One-time password (OATH) for `mfa': "


def sbatch(testbed, job_name: str, *options: str, command: str = "sleep 300", output: str = "/dev/null"):
    """sbatch as the test user: the result, whether the site accepted the job or not."""
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", f"--output={output}", *options, f"--wrap={command}"]
    return testbed.runner.run_blocking(argv, timeout=60)


@pytest.fixture
def submit(testbed, job_name):
    """submit(*sbatch options, command=..., output=...): a job the site must accept, its id; cancelled after."""
    ids: list[str] = []

    def submit(*options: str, **command_and_output: str) -> str:
        ids.append(sbatch(testbed, job_name, *options, **command_and_output).check().stdout.strip().split(";")[0])
        return ids[-1]

    yield submit
    if ids:
        testbed.runner.run_blocking(["scancel", *ids], timeout=60)


@pytest.mark.schedulers(*ENDINGS)
@pytest.mark.parametrize("exit_status", [0, 3])
def test_accounting_reports_how_a_finished_job_ended(testbed, job_name, exit_status):
    script = f"{LOGS}/{job_name}.sh"
    testbed.write_file(script, f"#!/bin/bash\nexit {exit_status}\n")
    job_id = testbed.submit_script(script, job_name)
    ending = wait_for(lambda: testbed.final_state(job_id), f"the accounting's record of job {job_id}", timeout=90)
    assert ending == ENDINGS[testbed.name][exit_status != 0]


def test_a_third_job_in_the_limited_qos_is_refused(testbed, job_name, submit):
    submit("--qos=limited")
    submit("--qos=limited")
    third = sbatch(testbed, job_name, "--qos=limited")
    assert not third.ok
    assert third.stderr.strip() == SUBMIT_LIMIT_ERROR
    submit()  # outside that QOS the same user is not limited


def test_an_array_larger_than_max_array_size_is_refused(testbed, job_name, submit):
    too_large = sbatch(testbed, job_name, "--array=0-10", "--hold")
    assert not too_large.ok
    assert too_large.stderr.strip() == ARRAY_LIMIT_ERROR
    submit("--array=0-9", "--hold")
    assert len(testbed.active_jobs(job_name)) == 10


def test_a_job_over_its_memory_is_killed_and_its_output_says_why(testbed, job_name, submit):
    # Measured every second (jobacct_gather/linux with OverMemoryKill: no cgroups in the containers), a step
    # over its --mem is killed with SIGKILL. Accounting says FAILED 0:9, not OUT_OF_MEMORY (cgroups only).
    output = f"{LOGS}/{job_name}.out"
    hog = "python3 -c 'b = bytearray(400 * 2**20); import time; time.sleep(120)'"
    job_id = submit("--mem=100M", command=hog, output=output)
    assert wait_for(lambda: testbed.final_state(job_id), f"job {job_id} to end", timeout=60) == "FAILED"
    exit_code = testbed.run("sacct", "--noheader", "--allocations", f"--jobs={job_id}", "--format=ExitCode")
    assert exit_code.split() == ["0:9"]  # killed by signal 9
    assert "error: Exceeded job memory limit" in testbed.run("cat", output)


def test_a_job_past_the_short_partitions_time_limit_ends_timeout(testbed, submit):
    # MaxTime=1 (minute), OverTimeLimit=0: slurmctld ends it at its next time-limit check after 60 s.
    job_id = submit("--partition=short", "--time=1")
    assert wait_for(lambda: testbed.final_state(job_id), f"job {job_id} to end", timeout=150) == "TIMEOUT"


# ---- the login node's one-time password ----------------------------------------


def one_time_password(secret: bytes, at: float) -> str:
    """The TOTP code (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits) pam_oath expects at time `at`."""
    digest = hmac.new(secret, struct.pack(">Q", int(at // 30)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**6)


def mfa_login(answer: str) -> tuple[list[str], list[str], bool]:
    """Log in as user mfa with the client key, then answer the keyboard-interactive
    prompts with `answer`: the methods left after the key, the prompts shown, and
    whether the login went through."""
    project = os.environ["JQREF_TESTBED_PROJECT"]
    config = paramiko.SSHConfig.from_path(os.environ["JQREF_SSH_CONFIG"]).lookup(f"{project}-mfa")
    key = paramiko.Ed25519Key.from_private_key_file(config["identityfile"][0])
    prompts: list[str] = []

    def answer_prompts(title, instructions, prompt_list):
        prompts.extend(text for text, _echo in prompt_list)
        return [answer for _ in prompt_list]

    transport = paramiko.Transport((config["hostname"], 22))
    try:
        transport.start_client(timeout=30)
        left = transport.auth_publickey(config["user"], key)
        try:
            transport.auth_interactive(config["user"], answer_prompts)
        except paramiko.AuthenticationException:
            pass
        return left, prompts, transport.is_authenticated()
    finally:
        transport.close()


@pytest.mark.host
def test_the_mfa_user_logs_in_with_key_and_one_time_password_only():
    secret_file = ROOT / "build" / "ssh" / f"{os.environ['JQREF_TESTBED_PROJECT']}.mfa-secret"
    secret = bytes.fromhex(secret_file.read_text().strip())

    left, prompts, authenticated = mfa_login("")
    assert left == ["keyboard-interactive"], "the key alone must not be enough"
    assert prompts == [OTP_PROMPT] and not authenticated

    # Sent with at least 5 s left in its 30 s step, the code is still current when pam_oath checks it.
    wait_for(lambda: time.time() % 30 < 25, "a time step with 5 s to spare", timeout=30)
    left, prompts, authenticated = mfa_login(one_time_password(secret, time.time()))
    assert left == ["keyboard-interactive"] and prompts == [OTP_PROMPT] and authenticated
