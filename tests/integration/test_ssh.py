"""What the SSH mode promises beyond the common suite: host keys checked on
every hop, argv arriving intact, a dropped connection during scale()
ending with exactly the requested jobs, and a login that needs a one-time
password after the key costing one code per session."""

from __future__ import annotations

import hashlib
import hmac
import os
import pathlib
import struct
import subprocess
import time

import paramiko
import pytest
from distributed import Client

from jqref import SSHRunner

from .conftest import ROOT, node_containers, scheduler_on, wait_for, worker_count

pytestmark = [pytest.mark.integration, pytest.mark.ssh_mode]

HOSTILE = ["two words", 'it\'s "quoted"', "$(touch /tmp/pwned)", "`id`", "a;b|c&&d", "${HOME}*", "\\n"]


@pytest.fixture
def ssh_files(tmp_path):
    """A copy of the testbed's ssh config whose known_hosts the test controls."""
    config = tmp_path / "config"
    known = tmp_path / "known_hosts"
    text = pathlib.Path(os.environ["JQREF_SSH_CONFIG"]).read_text()
    config.write_text(
        "\n".join(
            f"  UserKnownHostsFile {known}" if line.strip().startswith("UserKnownHostsFile") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    real_known = next(line.split()[1] for line in text.splitlines() if line.strip().startswith("UserKnownHostsFile"))
    return config, known, real_known


def destination():
    return os.environ["JQREF_SSH_DESTINATION"]


@pytest.mark.placement_independent
def test_unknown_host_is_refused(ssh_files):
    config, known, _ = ssh_files
    known.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        SSHRunner(destination(), config_file=str(config)).run_blocking(["true"])


@pytest.mark.placement_independent
def test_changed_host_key_is_refused_on_every_hop(ssh_files, tmp_path):
    config, known, real_known = ssh_files
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = pathlib.Path(f"{other}.pub").read_text().split()[:2]
    lines = pathlib.Path(real_known).read_text().splitlines()
    hops = [hop.hostname for hop in SSHRunner(destination(), config_file=str(config)).hops]
    for hop in hops:  # one hop at a time gets a different key
        changed = [f"{hop} {' '.join(wrong)}" if line.split()[0] == hop else line for line in lines]
        known.write_text("\n".join(changed) + "\n")
        with pytest.raises(paramiko.BadHostKeyException):
            SSHRunner(destination(), config_file=str(config)).run_blocking(["true"])


@pytest.mark.placement_independent
def test_new_hosts_are_trusted_only_on_request(ssh_files):
    config, known, _ = ssh_files
    known.write_text("")
    runner = SSHRunner(destination(), config_file=str(config), trust_unknown_hosts=True)
    assert runner.run_blocking(["echo", "ok"]).stdout == "ok\n"
    assert "ssh-ed25519" in known.read_text()
    assert SSHRunner(destination(), config_file=str(config)).run_blocking(["true"]).ok  # recorded: now known


@pytest.mark.placement_independent
def test_arguments_arrive_unchanged_and_nothing_runs_in_a_shell(runner):
    for value in HOSTILE:
        assert runner.run_blocking(["printf", "%s", value]).check().stdout == value
    assert not runner.run_blocking(["test", "-e", "/tmp/pwned"]).ok


@pytest.mark.placement_independent
def test_login_shell_output_noise_does_not_reach_the_parser(runner):
    profile = "/home/dask/.bash_profile"
    runner.run_blocking(["cp", "/dev/null", profile]).check()
    runner.run_blocking(["sh", "-c", f"echo 'echo noise from the profile' > {profile}"]).check()
    try:
        noisy = SSHRunner(destination(), config_file=os.environ["JQREF_SSH_CONFIG"], login_shell=True)
        assert noisy.run_blocking(["echo", "clean"]).stdout == "clean\n"
    finally:
        runner.run_blocking(["rm", "-f", profile])


def test_connection_killed_during_scale_ends_with_exactly_the_requested_jobs(
    make_cluster, client_for, testbed, job_name, runner, caplog
):
    # A login profile that takes a while, so the cut lands while the
    # submissions are in flight. A scheduler on the login node must outlive
    # the cut: detached.
    profile = "/home/dask/.bash_profile"
    runner.run_blocking(["sh", "-c", f"echo 'sleep 2' > {profile}"]).check()
    slow = SSHRunner(destination(), config_file=os.environ["JQREF_SSH_CONFIG"], login_shell=True)
    try:
        cluster = make_cluster(runner=slow, **({"detach": True} if scheduler_on() == "login" else {}))
        client = client_for(cluster)
        cluster.scale(jobs=4)
        nodes = node_containers()
        wait_for(
            lambda: nodes.exec("login", "pgrep", "-u", "dask", "-x", "sleep", check=False)[1],
            "the submissions to be under way",
        )
        for service in [s for s in ("login", "bastion") if nodes.running(s)]:
            nodes.exec(service, "pkill", "-KILL", "-u", "dask", "-x", "sshd-session", check=False)
        wait_for(lambda: worker_count(client) == 4, "4 workers after the connection came back")
        assert len(testbed.active_jobs(job_name)) == 4 == len(cluster.batch.active)
        assert "was interrupted" in caplog.text
    finally:
        runner.run_blocking(["rm", "-f", profile])


# ---- known_hosts as OpenSSH reads it: host certificates, @revoked, hashed names --------


@pytest.fixture(autouse=True)
def testbed_reachable(request):
    """Every test here, `ssh_files` ones too, runs with the testbed up and its
    ssh config in the environment, even when it runs first or alone."""
    request.getfixturevalue("runner")


def host_ca() -> str:
    """The public key of the CA scripts/testbed.sh signs the login and bastion
    host keys with (a host certificate each, for their names and addresses)."""
    ca = os.path.join(os.path.dirname(__file__), "..", "..", "build", "ssh", "host_ca.pub")
    return " ".join(open(ca).read().split()[:2])


def hop_names(config) -> list[str]:
    return [hop.hostname for hop in SSHRunner(destination(), config_file=str(config)).hops]


@pytest.mark.placement_independent
def test_host_certificate_signed_by_a_listed_ca_is_accepted(ssh_files):
    config, known, _ = ssh_files
    # No host key at all, only the CA, for the names of every hop (and one that is excluded).
    known.write_text(f"@cert-authority {','.join(hop_names(config))},!excluded.example {host_ca()}\n")
    assert SSHRunner(destination(), config_file=str(config)).run_blocking(["echo", "ok"]).stdout == "ok\n"
    # The same CA listed for other hosts only: nothing vouches for these.
    known.write_text(f"@cert-authority *.example,!{hop_names(config)[0]} {host_ca()}\n")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        SSHRunner(destination(), config_file=str(config)).run_blocking(["true"])


@pytest.mark.placement_independent
def test_revoked_host_key_is_refused_with_where_it_is_revoked(ssh_files):
    config, known, real_known = ssh_files
    host_key = " ".join(pathlib.Path(real_known).read_text().split()[1:3])
    known.write_text(f"@cert-authority * {host_ca()}\n@revoked * {host_key}\n")
    with pytest.raises(paramiko.SSHException, match=rf"revoked.*{known}:2") as refused:
        SSHRunner(destination(), config_file=str(config)).run_blocking(["true"])
    assert hop_names(config)[0] in str(refused.value)


@pytest.mark.placement_independent
def test_new_host_is_appended_hashed_and_the_file_is_otherwise_untouched(ssh_files):
    config, known, _ = ssh_files
    with open(config, "a") as f:
        f.write("Host *\n  HashKnownHosts yes\n")
    # What paramiko cannot read, or could not write back: comments, a CA line,
    # a key type it does not know, a line without a final newline.
    before = (
        b"# site keys, managed by hand\n"
        b"@cert-authority *.other.example " + host_ca().encode() + b"\n"
        b"old.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t  # a key\n"
        b"other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzd"
    )
    known.write_bytes(before)
    runner = SSHRunner(destination(), config_file=str(config), trust_unknown_hosts=True)
    assert runner.run_blocking(["echo", "ok"]).stdout == "ok\n"
    after = known.read_bytes()
    assert after.startswith(before + b"\n")
    added = after[len(before) + 1 :].decode().splitlines()
    assert len(added) == len(hop_names(config))  # one line per hop, its name hashed
    assert all(line.startswith("|1|") and line.split()[1] == "ssh-ed25519" for line in added)
    assert SSHRunner(destination(), config_file=str(config)).run_blocking(["true"]).ok  # hashed lines read back


def one_time_password(secret: bytes, at: float) -> str:
    """The TOTP code (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits) at time `at`."""
    digest = hmac.new(secret, struct.pack(">Q", int(at // 30)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


@pytest.mark.placement_independent
@pytest.mark.schedulers("slurm")  # the SLURM testbed's user mfa logs in with key and TOTP (docker/slurm/README.md)
def test_a_one_time_password_login_carries_a_whole_session_on_one_connection(testbed, job_name, cluster_options):
    project = os.environ["JQREF_TESTBED_PROJECT"]
    secret = bytes.fromhex((ROOT / "build" / "ssh" / f"{project}.mfa-secret").read_text().strip())
    asked = []

    def answer(title, instructions, prompts):
        if not prompts:  # pam_oath's closing round
            return []
        asked.append([text for text, _ in prompts])
        # The next step's code: pam_oath accepts one step of skew and refuses
        # a code already used, as other tests' logins may have this step's.
        return [one_time_password(secret, time.time() + 30)]

    runner = SSHRunner(f"{project}-mfa", config_file=os.environ["JQREF_SSH_CONFIG"], answer_prompts=answer)
    options = {**cluster_options, "log_directory": None, "runner": runner}
    with testbed.cluster_cls(**options) as cluster, Client(cluster) as client:
        cluster.scale(jobs=2)
        assert client.submit(lambda: __import__("getpass").getuser()).result(timeout=120) == "mfa"
        assert sum(client.gather(client.map(lambda x: x * x, range(20)))) == sum(x * x for x in range(20))
        cluster.scale(0)
        wait_for(lambda: not testbed.active_jobs(job_name), "the mfa user's jobs to leave the queue")
    assert not testbed.active_jobs(job_name)
    assert asked == [["One-time password (OATH) for `mfa': "]]  # one code for the whole session
