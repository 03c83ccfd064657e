"""Run batch commands on a login node over SSH (paramiko).

One long-lived connection per login host carries every command as its own
channel, at most `max_sessions` at a time (below sshd's MaxSessions).
Authentication and hosts follow OpenSSH: the ssh config as `ssh_config`
resolves it, the agent, and known_hosts checked on every hop as OpenSSH
checks it (`known_hosts`: host certificates, @revoked, hashed names).

Commands are argv lists joined with shell quoting. The remote side always
runs them through the user's shell (that is how SSH works), so each one is
quoted word by word and preceded by a marker line: anything start-up files
print before the marker is not mistaken for the command's output.

The same connection also carries long-running commands (`spawn`, e.g. a Dask
scheduler on the login node; see `ssh_process`) and local port forwards
(`forward`, like ``ssh -L``; see `port_forward`), without another login.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import select
import shlex
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import paramiko

from .known_hosts import HostKeyRefused, KnownHostsPolicy
from .port_forward import PortForward
from .runners import DEFAULT_TIMEOUT, CommandError, CommandResult, CommandTimeout, ConnectionLost, _checked_argv
from .ssh_config import Hop, _split_destination, hops_to
from .ssh_process import RemoteProcess
from .ssh_prompts import PromptAnswerer, PromptAnswers, ask_on_terminal

logger = logging.getLogger(__name__)


def _connected(client: paramiko.SSHClient) -> paramiko.Transport:
    """The connection of a client that connected; closed since, it has none."""
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("the SSH connection was closed")
    return transport


#: The longest wait between two attempts to open a channel that sshd refused.
MAX_CHANNEL_RETRY_DELAY = 0.5


def _remote_pid(out: bytearray, marker: str) -> int | None:
    """The pid the command's marker line gave, once the whole line arrived."""
    _, found, rest = bytes(out).partition(f"{marker} ".encode())
    pid, newline, _ = rest.partition(b"\n")
    return int(pid) if found and newline and pid.isdigit() else None


class _Backoff:
    """Waits between tries of something never sent: doubling up to
    `MAX_CHANNEL_RETRY_DELAY`, until `deadline` (time.monotonic())."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.delay = 0.05

    def wait(self) -> bool:
        """Sleep before the next try; False, without sleeping, once the deadline has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(self.delay, left))
        self.delay = min(2 * self.delay, MAX_CHANNEL_RETRY_DELAY)
        return True


def _refused_hint(error: Exception | None) -> str:
    """Why sshd may close connections before its banner: the usual causes, for an error that says only that."""
    if "protocol banner" not in str(error):
        return ""
    return (
        ". sshd accepted the connection and closed it at once: it may be refusing this address for a "
        "while (OpenSSH 9.8 and later penalise an address after failed, cut or unauthenticated logins: "
        "PerSourcePenalties; its log says 'drop connection ... penalty'), or have too many logins in "
        "progress (MaxStartups). Try again in a few minutes, or ask the site"
    )


class _NotStarted(Exception):
    """sshd closed a command's channel before the command started: safe to retry."""


class SSHRunner:
    """Run batch commands on `destination` over one persistent connection.

    Parameters
    ----------
    destination : str
        ``[user@]host[:port]``, or an alias from the ssh config.
    config_file : str or None
        The ssh config read as OpenSSH reads it (``HostName``, ``User``,
        ``Port``, ``IdentityFile``, ``UserKnownHostsFile``, ``ProxyJump``
        chains); None reads none. Default ``~/.ssh/config``.
    known_hosts : str, optional
        Another known_hosts file to check host keys against.
    identity_file : str, optional
        A private key to try first.
    trust_unknown_hosts : bool
        Accept a host key seen for the first time and append it to the first
        known_hosts file (hashed under ``HashKnownHosts yes``), like
        ``StrictHostKeyChecking accept-new``. By default such hosts are
        refused, like ``StrictHostKeyChecking yes``; a changed key always is.
    login_shell : bool
        Run each command through ``bash -l``, so that the site's profile
        (``module``, ``PATH``) applies.
    max_sessions : int
        Commands running at once, each a channel of the one connection (keep
        it below sshd's ``MaxSessions``, 10 by default). Default 4.
    keepalive : float
        Seconds between keepalives; a connection whose traffic stays
        unacknowledged for three of them is taken as dead and made again.
        Default 15.
    connect_timeout : float
        Seconds to connect, exchange banners and authenticate, per hop. Default 30.
    reconnect_attempts : int
        Attempts to connect again, with backoff, before a command fails
        with `ConnectionLost`. Default 5.
    timeout : float
        Seconds a command may take unless its caller says otherwise. Default 120.
    answer_prompts : callable, optional
        Answers what a host asks after the key (a one-time password):
        ``answer_prompts(title, instructions, prompts)`` returns one string per
        ``(text, echo)`` prompt. Asked once per connection (the runner keeps
        it for the session); a reconnect asks again. Default: ask on the
        terminal, hidden (or in the notebook), refused at once without one.
    """

    def __init__(
        self,
        destination: str,
        *,
        config_file: str | None = "~/.ssh/config",
        known_hosts: str | None = None,
        identity_file: str | None = None,
        trust_unknown_hosts: bool = False,
        login_shell: bool = False,
        max_sessions: int = 4,
        keepalive: float = 15,
        connect_timeout: float = 30,
        reconnect_attempts: int = 5,
        timeout: float = DEFAULT_TIMEOUT,
        answer_prompts: PromptAnswerer | None = None,
    ):
        if reconnect_attempts < 1:
            raise ValueError(f"reconnect_attempts must be at least 1, got {reconnect_attempts}")
        self._description = {
            "kind": "ssh",
            "destination": destination,
            "config_file": config_file,
            "known_hosts": known_hosts,
            "identity_file": identity_file,
            "login_shell": login_shell,
        }
        config = paramiko.SSHConfig()
        if config_file and os.path.exists(os.path.expanduser(config_file)):
            config = paramiko.SSHConfig.from_path(os.path.expanduser(config_file))
        extra_known = (os.path.expanduser(known_hosts),) if known_hosts else ()
        self.destination = destination
        self.hops = hops_to(destination, config, extra_known)
        if identity_file:
            target = self.hops[-1]
            self.hops[-1] = Hop(
                target.hostname,
                target.port,
                target.user,
                (os.path.expanduser(identity_file), *target.identity_files),
                target.known_hosts,
            )
        self.trust_unknown_hosts = trust_unknown_hosts
        # HashKnownHosts as the destination's ssh config says, for every hop.
        hash_known_hosts = config.lookup(_split_destination(destination)[1]).get("hashknownhosts", "no")
        self.hash_known_hosts = hash_known_hosts.lower() == "yes"
        self.login_shell = login_shell
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.reconnect_attempts = reconnect_attempts
        self.timeout = timeout
        self.answer_prompts = answer_prompts
        self._clients: list[paramiko.SSHClient] = []
        self._connect_lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(max_sessions)
        self._pool = ThreadPoolExecutor(max_workers=max_sessions + 1, thread_name_prefix="jqref-ssh")
        self._forwards: list[PortForward] = []

    def __repr__(self) -> str:
        return f"SSHRunner({self.destination!r})"

    def describe(self) -> dict:
        """How to connect again from another process (for `jqref cleanup`)."""
        return dict(self._description)

    # ---- connection --------------------------------------------------------

    def _client_for(self, hop: Hop) -> tuple[paramiko.SSHClient, KnownHostsPolicy]:
        """A client that loads no host keys itself: paramiko then asks the
        policy about every key, and the policy reads known_hosts as OpenSSH does."""
        client = paramiko.SSHClient()
        policy = KnownHostsPolicy(
            hop.hostname,
            hop.port,
            hop.known_hosts,
            trust_unknown=self.trust_unknown_hosts,
            hash_names=self.hash_known_hosts,
        )
        client.set_missing_host_key_policy(policy)
        return client, policy

    def _open(self) -> None:
        """Connect through every hop; each hop's host key is checked."""
        clients: list[paramiko.SSHClient] = []
        sock = None
        try:
            for i, hop in enumerate(self.hops):
                client, policy = self._client_for(hop)
                clients.append(client)
                host = f"{hop.user}@{hop.hostname}" if hop.user else hop.hostname
                prompts = PromptAnswers(host, self.answer_prompts or ask_on_terminal(host))
                try:
                    client.connect(
                        hop.hostname,
                        hop.port,
                        username=hop.user,
                        key_filename=list(hop.identity_files) or None,  # type: ignore[arg-type]  # a list, as paramiko takes; its stubs say str
                        sock=sock,
                        timeout=self.connect_timeout,
                        banner_timeout=self.connect_timeout,
                        auth_timeout=self.connect_timeout,
                        transport_factory=prompts.answering(policy.transport),
                    )
                except paramiko.AuthenticationException:
                    prompts.raise_kept()
                    raise
                if i + 1 < len(self.hops):
                    nxt = self.hops[i + 1]
                    sock = _connected(client).open_channel(
                        "direct-tcpip", (nxt.hostname, nxt.port), ("127.0.0.1", 0), timeout=self.connect_timeout
                    )
        except Exception:
            for client in reversed(clients):
                client.close()
            raise
        first_hop = _connected(clients[0]).sock
        if isinstance(first_hop, socket.socket):  # always: paramiko connected it (the later hops are channels)
            self._tune(first_hop)
        _connected(clients[-1]).set_keepalive(int(self.keepalive))
        self._clients = clients

    def _tune(self, sock: socket.socket) -> None:
        """paramiko leaves Nagle on: every small command would wait ~40 ms. And
        its keepalives expect no answer, so a connection that silently died
        (Wi-Fi gone, laptop asleep) would look alive for ever: the kernel
        gives up on it when what was sent stays unacknowledged for three
        keepalive intervals, and the next command reconnects."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(3 * self.keepalive * 1000))

    def _drop(self) -> None:
        for client in reversed(self._clients):
            with contextlib.suppress(Exception):
                client.close()
        self._clients = []

    def _transport(self) -> paramiko.Transport:
        """The live connection, re-opened with backoff if it died. Authentication
        and host-key errors are not retried: they will not fix themselves."""
        with self._connect_lock:
            live = self._clients[-1].get_transport() if self._clients else None
            if live is not None and live.is_active():
                return live
            self._drop()
            error: Exception | None = None
            for attempt in range(self.reconnect_attempts):
                if error is not None:
                    delay = min(2 ** (attempt - 1), 15)
                    logger.warning("SSH to %s failed (%s); retrying in %d s", self.destination, error, delay)
                    time.sleep(delay)
                try:
                    self._open()
                    return _connected(self._clients[-1])
                except (paramiko.AuthenticationException, paramiko.BadHostKeyException, paramiko.SSHException) as e:
                    if isinstance(e, (paramiko.AuthenticationException, paramiko.BadHostKeyException, HostKeyRefused)):
                        raise
                    error = e
                except OSError as e:
                    error = e
            raise ConnectionError(f"cannot reach {self.destination} over SSH: {error}{_refused_hint(error)}")

    # ---- commands ---------------------------------------------------------

    def _command_line(self, argv: tuple[str, ...], marker: str, reads_stdin: bool = True) -> str:
        # The marker line says the command starts, and as which process (exec
        # keeps the shell's pid). If it cannot be written, the channel is gone
        # and the command must not run. A command given no input reads
        # /dev/null rather than wait for the channel's EOF.
        redirect = "" if reads_stdin else " </dev/null"
        inner = f"printf '%s %s\\n' {marker} \"$$\" || exit 141; exec {shlex.join(argv)}{redirect}"
        if self.login_shell:
            return shlex.join(["bash", "-l", "-c", inner])
        return inner

    def _open_channel(self, argv: tuple[str, ...], timeout: float, deadline: float | None = None) -> paramiko.Channel:
        """A new channel on the live connection for `argv`, which has not been
        sent yet. sshd refuses channels for a moment when many just closed
        (they still count against MaxSessions): that is retried on the same
        connection, which is dropped only if it is really dead, for up to the
        command's `timeout`. Nothing has been sent, so retrying is always safe;
        the `ConnectionLost` at the deadline says so, for callers to retry too."""
        backoff = _Backoff(deadline or time.monotonic() + timeout)
        while True:
            transport = self._transport()
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as e:
                if not transport.is_active():
                    self._drop()
                if not backoff.wait():
                    raise ConnectionLost(
                        argv,
                        f"the SSH channel could not be opened within {timeout:g} s, so the command was not sent: {e}",
                    ) from e

    def _exec(self, argv: tuple[str, ...], stdin: str | None, timeout: float) -> CommandResult:
        """Run `argv` on a channel of its own. A channel that sshd closes before
        the command's shell printed the marker never ran the command (sshd
        does so under a burst of sessions): that is retried on a new channel
        until the deadline, as a refused open is."""
        backoff = _Backoff(time.monotonic() + timeout)
        while True:
            try:
                return self._exec_once(argv, stdin, backoff.deadline, timeout)
            except CommandTimeout as e:
                if e.remote_pid is not None:
                    self._end_remote_session(e.remote_pid)
                raise
            except _NotStarted as e:
                if not backoff.wait():
                    raise ConnectionLost(
                        argv, f"sshd closed every channel for it within {timeout:g} s, so the command was not run: {e}"
                    ) from None

    def _exec_once(self, argv: tuple[str, ...], stdin: str | None, deadline: float, timeout: float) -> CommandResult:
        marker = f"jqref-{uuid.uuid4().hex}"
        with self._sessions:
            channel = self._open_channel(argv, timeout, deadline)
            with channel:
                try:
                    channel.exec_command(self._command_line(argv, marker, reads_stdin=stdin is not None))
                except (paramiko.SSHException, EOFError, OSError) as e:
                    self._not_started_or_lost(channel, argv, e)
                out, err = bytearray(), bytearray()
                try:
                    if stdin is not None:
                        # No EOF otherwise: paramiko sends it outside the channel's lock, so it can
                        # follow the CLOSE it sends in answer to sshd's, and sshd ends the whole
                        # connection over an EOF for a channel it has freed ("ieof packet referred
                        # to nonexistent channel"). The EOF that close() sends comes before its CLOSE.
                        channel.sendall(stdin.encode())
                        channel.shutdown_write()
                    self._collect(channel, argv, marker, deadline, timeout, out, err)
                except CommandTimeout as e:
                    e.remote_pid = _remote_pid(out, marker)
                    raise
                except (paramiko.SSHException, EOFError, OSError) as e:
                    # Sent, perhaps run: the caller decides whether to look before retrying.
                    if not channel.get_transport().is_active():
                        self._drop()
                    raise ConnectionLost(argv, f"the SSH channel failed: {e}", _remote_pid(out, marker)) from e
        head, found, body = out.decode(errors="replace").partition(f"{marker} ")
        return CommandResult(
            argv, channel.recv_exit_status(), body.partition("\n")[2] if found else head, err.decode(errors="replace")
        )

    def _end_remote_session(self, pid: int) -> None:
        """End a timed-out command on the login node, with everything it
        started: sshd made it a session of its own, so the session goes whole."""
        try:
            found = self._exec(("ps", "-o", "sid=", "-p", str(pid)), None, self.connect_timeout)
            session = found.stdout.strip()
            if found.ok and session.isdigit() and session != "0":
                self._exec(("pkill", "-KILL", "-s", session), None, self.connect_timeout)
        except CommandError as e:
            logger.warning("could not end the timed-out command (pid %s) on %s: %s", pid, self.destination, e)

    def _not_started_or_lost(self, channel: paramiko.Channel, argv: tuple[str, ...], reason: object) -> NoReturn:
        """A channel closed before its command started: `_NotStarted` while the
        connection lives, else the connection is dropped and the loss raised."""
        if channel.get_transport().is_active():
            raise _NotStarted(str(reason) or "channel closed")
        self._drop()
        raise ConnectionLost(argv, "the SSH connection closed before the command finished")

    def _collect(
        self,
        channel: paramiko.Channel,
        argv: tuple[str, ...],
        marker: str,
        deadline: float,
        timeout: float,
        out: bytearray,
        err: bytearray,
    ) -> None:
        """Read stdout and stderr together into `out` and `err` until the command
        exits, or give up at the deadline: waiting for an exit status alone can
        hang for ever."""
        while True:
            if channel.recv_ready():
                out += channel.recv(65536)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            elif channel.exit_status_ready() and (channel.eof_received or channel.closed):
                # sshd may send the exit status before the last of the output
                # (it reaps the command while the pipe still holds some), but
                # never before EOF: from here on, all of it is buffered.
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.recv_exit_status() == -1:  # closed without an exit status
                    self._closed_early(channel, argv, marker, out)
                break
            elif channel.closed or not channel.get_transport().is_active():
                self._closed_early(channel, argv, marker, out)
            elif time.monotonic() > deadline:
                raise CommandTimeout(argv, timeout)
            else:
                select.select([channel], [], [], 0.05)

    def _closed_early(self, channel: paramiko.Channel, argv: tuple[str, ...], marker: str, out: bytearray) -> NoReturn:
        """The channel ended without an exit status. Before the marker, the
        command never started; after it, it may have run."""
        pid = _remote_pid(out, marker)
        if pid is None:
            self._not_started_or_lost(channel, argv, "sshd closed the channel before the command started")
        if not channel.get_transport().is_active():
            self._drop()
        raise ConnectionLost(argv, "the SSH connection closed before the command finished", pid)

    async def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        args = _checked_argv(argv)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._exec, args, stdin, timeout or self.timeout)

    def run_blocking(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        return self._exec(_checked_argv(argv), None, timeout or self.timeout)

    @contextlib.asynccontextmanager
    async def script_file(self, text: str) -> AsyncIterator[str]:
        """A file on the login node holding `text`, in a private 0700 directory,
        removed afterwards (for submit commands that cannot read stdin)."""
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(self._pool, self._upload, text)
        try:
            yield path
        finally:
            await loop.run_in_executor(self._pool, self._remove, path)

    def _upload(self, text: str) -> str:
        with self._sessions, self._clients_sftp() as sftp:
            directory = ".jqref"
            with contextlib.suppress(OSError):
                sftp.mkdir(directory, mode=0o700)
            sftp.chmod(directory, 0o700)
            path = posixpath.join(sftp.normalize(directory), f"job-{uuid.uuid4().hex}.sh")
            with sftp.open(path, "w") as f:
                f.chmod(0o600)
                f.write(text)
            return path

    def _remove(self, path: str) -> None:
        with self._sessions, self._clients_sftp() as sftp, contextlib.suppress(OSError):
            sftp.remove(path)

    async def write_private_files(
        self, directory: str, files: Mapping[str, str], *, private_directory: bool
    ) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._write_private_files, directory, files, private_directory)

    def _write_private_files(self, directory: str, files: Mapping[str, str], private_directory: bool) -> dict[str, str]:
        with self._sessions, self._clients_sftp() as sftp:
            made = ""
            for part in directory.split("/"):
                made = posixpath.join(made, part) if made or part else "/"
                with contextlib.suppress(OSError):
                    sftp.mkdir(made, mode=0o700)
            if private_directory:
                sftp.chmod(directory, 0o700)
            folder = sftp.normalize(directory)
            paths = {}
            for name, text in files.items():
                path = posixpath.join(folder, name)
                with sftp.open(path, "wx") as f:
                    f.chmod(0o600)
                    f.write(text)
                paths[name] = path
            return paths

    async def remove_files(self, paths: Sequence[str]) -> None:
        loop = asyncio.get_running_loop()
        for path in paths:
            await loop.run_in_executor(self._pool, self._remove, path)

    @contextlib.contextmanager
    def _clients_sftp(self) -> Iterator[paramiko.SFTPClient]:
        sftp = paramiko.SFTPClient.from_transport(self._transport())
        if sftp is None:
            raise paramiko.SSHException(f"{self.destination} did not start its SFTP subsystem")
        try:
            yield sftp
        finally:
            sftp.close()

    # ---- long-running commands and port forwards ------------------------

    def spawn(self, argv: Sequence[str], *, stdin: str = "") -> RemoteProcess:
        """Start `argv` on the login node and leave it running; `stdin` is sent
        first and stdin then stays open for as long as this connection lives.
        It does not take one of the `max_sessions` command slots."""
        args = _checked_argv(argv)
        marker = f"jqref-{uuid.uuid4().hex}"
        channel = self._open_channel(args, self.timeout)
        channel.exec_command(self._command_line(args, marker))
        if stdin:
            channel.sendall(stdin.encode())
        return RemoteProcess(channel, args, marker)

    def forward(self, remote_host: str, remote_port: int) -> PortForward:
        """Carry connections to a local port to `remote_host:remote_port` as the
        login node reaches it (``ssh -L``); closed with the runner."""
        forward = PortForward(self._transport, remote_host, remote_port)
        self._forwards.append(forward)
        return forward

    async def close(self) -> None:
        for forward in self._forwards:
            forward.close()
        self._drop()
        self._pool.shutdown(wait=False)
