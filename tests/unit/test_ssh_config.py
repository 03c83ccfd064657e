"""How SSHRunner reads destinations and ~/.ssh/config, as OpenSSH would."""

import os
import signal
import subprocess

import paramiko
import pytest

from jqref.ssh import SSHRunner
from jqref.ssh_config import hops_to

CONFIG = """
Host cluster
  HostName login.hpc.example
  User alice
  IdentityFile ~/.ssh/hpc_key
  ProxyJump gate

Host gate
  HostName gate.example
  Port 2200
  ProxyJump outer

Host outer
  HostName 203.0.113.5
  UserKnownHostsFile /etc/jqref_known_a /etc/jqref_known_b
"""


def config():
    return paramiko.SSHConfig.from_text(CONFIG)


def test_proxyjump_chains_resolve_outermost_first():
    hops = hops_to("cluster", config())
    assert [(h.hostname, h.port) for h in hops] == [
        ("203.0.113.5", 22),
        ("gate.example", 2200),
        ("login.hpc.example", 22),
    ]
    assert hops[-1].user == "alice" and hops[-1].identity_files[0].endswith("/.ssh/hpc_key")
    assert hops[0].known_hosts == ("/etc/jqref_known_a", "/etc/jqref_known_b")


def test_destination_user_and_port_override_the_config():
    (hop,) = hops_to("bob@direct.example:2022", config())
    assert (hop.user, hop.hostname, hop.port) == ("bob", "direct.example", 2022)
    assert hops_to("ssh://carol@cluster", config())[-1].user == "carol"


def test_jump_loops_are_refused():
    looped = paramiko.SSHConfig.from_text("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(ValueError, match="too long"):
        hops_to("a", looped)


def test_commands_are_quoted_word_by_word_behind_a_marker():
    runner = SSHRunner("host.example", config_file=None)
    line = runner._command_line(("echo", "$(id)", "a b"), "MARK")
    shell = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True)
    first, _, rest = shell.stdout.partition("\n")
    marker, pid = first.split(" ")
    assert (marker, rest) == ("MARK", "$(id) a b\n") and pid.isdigit()  # the pid the command ran as
    login = SSHRunner("host.example", config_file=None, login_shell=True)._command_line(("squeue",), "MARK")
    assert login.startswith("bash -l -c ")


@pytest.mark.parametrize("sigpipe", [signal.SIG_DFL, signal.SIG_IGN])
def test_a_command_whose_channel_is_gone_before_it_starts_never_runs(tmp_path, sigpipe):
    # sshd gone: the marker line cannot be written, so the command must not
    # run afterwards, whether or not the remote shell ignores SIGPIPE.
    flag = tmp_path / "ran"
    line = SSHRunner("host.example", config_file=None)._command_line(("touch", str(flag)), "MARK")
    read, write = os.pipe()
    os.close(read)
    subprocess.run(["sh", "-c", line], stdout=write, preexec_fn=lambda: signal.signal(signal.SIGPIPE, sigpipe))
    os.close(write)
    assert not flag.exists()


def test_a_command_given_no_input_reads_nothing_rather_than_wait_for_the_channel():
    line = SSHRunner("host.example", config_file=None)._command_line(("cat",), "MARK", reads_stdin=False)
    read, write = os.pipe()  # a channel whose EOF never comes
    try:
        shell = subprocess.run(["sh", "-c", line], stdin=read, capture_output=True, text=True, timeout=10)
    finally:
        os.close(read)
        os.close(write)
    assert shell.returncode == 0 and shell.stdout.partition("\n")[2] == ""
