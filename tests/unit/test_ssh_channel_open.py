"""Opening a command's channel when sshd refuses it for a while, with stubs
standing in for paramiko's client and transport."""

import time

import paramiko
import pytest

from jqref import ConnectionLost, SSHRunner, ssh


class RefusingTransport:
    """Refuses the first `refusals` channels, as sshd does while closed sessions
    still count against MaxSessions, then opens them."""

    def __init__(self, refusals: int, active: bool = True):
        self.refusals = refusals
        self.active = active
        self.attempts = 0

    def is_active(self):
        return self.active

    def open_session(self, timeout=None):
        self.attempts += 1
        if self.attempts <= self.refusals:
            raise paramiko.ChannelException(1, "open failed")
        return f"channel {self.attempts}"


class DroppingTransport(RefusingTransport):
    """The link drops while a channel is being opened."""

    def open_session(self, timeout=None):
        self.active = False
        raise EOFError


class StubClient:
    def __init__(self, transport):
        self.transport = transport
        self.closed = False

    def get_transport(self):
        return self.transport

    def close(self):
        self.closed = True


def connected_runner(transport) -> SSHRunner:
    runner = SSHRunner("host.example", config_file=None)
    runner._clients = [StubClient(transport)]
    return runner


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """Dozens of refusals in well under a second: the retry logic is the same at any pace."""
    monkeypatch.setattr(ssh, "MAX_CHANNEL_RETRY_DELAY", 0.01)


def test_refused_opens_are_retried_on_the_same_connection_until_one_succeeds():
    transport = RefusingTransport(refusals=12)
    runner = connected_runner(transport)
    assert runner._open_channel(("squeue",), timeout=10) == "channel 13"
    assert not runner._clients[0].closed, "a refusal does not drop a live connection"


def test_refusals_past_the_deadline_fail_the_command_as_not_sent():
    transport = RefusingTransport(refusals=10**9)
    runner = connected_runner(transport)
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match=r"could not be opened within 0\.3 s, so the command was not sent"):
        runner.run_blocking(["squeue"], timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert transport.attempts > 5


def test_a_dead_connection_is_dropped_and_opened_again(monkeypatch):
    fresh = RefusingTransport(refusals=0)
    runner = connected_runner(DroppingTransport(refusals=0))
    old_client = runner._clients[0]
    monkeypatch.setattr(runner, "_open", lambda: setattr(runner, "_clients", [StubClient(fresh)]))
    assert runner._open_channel(("squeue",), timeout=10) == "channel 1"
    assert old_client.closed and fresh.attempts == 1


class ScriptedChannel:
    """A session channel that either is closed by sshd before its command
    starts (`closes_early`), or runs it: echoes the marker and exits 0."""

    def __init__(self, transport, closes_early: bool, output: bytes = b"ok\n"):
        self.transport, self.closes_early, self.output = transport, closes_early, output
        self.pending = b""
        self.closed = self.eof_received = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def get_transport(self):
        return self.transport

    def exec_command(self, command):
        if self.closes_early:
            self.closed = True
            raise paramiko.SSHException("Channel closed.")
        marker = command.split()[3].encode()  # printf '%s %s\n' <marker> "$$" || exit 141; exec ...
        self.pending = marker + b" 4242\n" + self.output
        self.eof_received = True
        self.transport.commands_run += 1

    def sendall(self, data):
        pass

    def shutdown_write(self):
        self.transport.separate_eofs += 1

    def recv_ready(self):
        return bool(self.pending)

    def recv(self, n):
        data, self.pending = self.pending, b""
        return data

    def recv_stderr_ready(self):
        return False

    def exit_status_ready(self):
        return self.eof_received

    def recv_exit_status(self):
        return 0


class EarlyClosingTransport(RefusingTransport):
    """Opens every channel, but sshd closes the first `early` ones before their command starts."""

    def __init__(self, early: int):
        super().__init__(refusals=0)
        self.early = early
        self.commands_run = 0
        self.separate_eofs = 0

    def open_session(self, timeout=None):
        self.attempts += 1
        return ScriptedChannel(self, closes_early=self.attempts <= self.early)


def test_a_channel_closed_before_its_command_started_is_retried_on_a_new_one():
    transport = EarlyClosingTransport(early=3)
    result = connected_runner(transport).run_blocking(["squeue"], timeout=10)
    assert (result.returncode, result.stdout) == (0, "ok\n")
    assert transport.attempts == 4 and transport.commands_run == 1


def test_channels_closed_early_until_the_deadline_fail_the_command_as_not_run():
    transport = EarlyClosingTransport(early=10**9)
    with pytest.raises(ConnectionLost, match=r"so the command was not run"):
        connected_runner(transport).run_blocking(["squeue"], timeout=0.3)
    assert transport.commands_run == 0


def test_a_command_without_input_gets_no_separate_eof_that_could_follow_the_close():
    # paramiko sends an EOF outside the channel's lock: after the CLOSE it
    # sends in answer to sshd's, sshd drops the whole connection over it.
    transport = EarlyClosingTransport(early=0)
    runner = connected_runner(transport)
    assert runner.run_blocking(["squeue"], timeout=10).stdout == "ok\n"
    assert transport.separate_eofs == 0
    assert runner._command_line(("squeue",), "MARK", reads_stdin=False).endswith("exec squeue </dev/null")
