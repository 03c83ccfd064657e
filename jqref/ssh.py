"""Run batch commands on a login node over SSH (paramiko).

One long-lived connection per login host carries every command as its own
channel, at most `max_sessions` at a time (below sshd's MaxSessions).
Authentication and hosts follow OpenSSH: ``~/.ssh/config`` (HostName, User,
Port, IdentityFile, UserKnownHostsFile, ProxyJump chains), the agent, and
known_hosts checked on every hop. An unknown or changed host key is refused
unless the caller opts in to trusting new hosts.

Commands are argv lists joined with shell quoting. The remote side always
runs them through the user's shell (that is how SSH works), so each one is
quoted word by word and preceded by a marker line: anything start-up files
print before the marker is not mistaken for the command's output.

The same connection also carries long-running commands (`spawn`, e.g. a Dask
scheduler on the login node) and local port forwards (`forward`), like
``ssh -L``, without another login.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import queue
import select
import shlex
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import paramiko

from .runners import DEFAULT_TIMEOUT, CommandError, CommandResult, CommandTimeout, ConnectionLost, _checked_argv

logger = logging.getLogger(__name__)


class TrustNewHosts(paramiko.MissingHostKeyPolicy):
    """Explicit opt-in only: accept a host seen for the first time and record it
    in `known_hosts`. A *changed* key is still refused (paramiko raises
    BadHostKeyException before asking any policy)."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        logger.warning("trusting new host key %s %s for %s", key.get_name(), key.fingerprint, hostname)
        client.get_host_keys().add(hostname, key.get_name(), key)
        os.makedirs(os.path.dirname(self.known_hosts), mode=0o700, exist_ok=True)
        client.save_host_keys(self.known_hosts)


@dataclass(frozen=True)
class Hop:
    """One SSH server to log in to, as OpenSSH would resolve it."""

    hostname: str
    port: int = 22
    user: str | None = None
    identity_files: tuple[str, ...] = ()
    known_hosts: tuple[str, ...] = ()
    jumps: tuple[str, ...] = field(default=(), compare=False)


def _split_destination(destination: str) -> tuple[str | None, str, int | None]:
    """'[user@]host[:port]' or 'ssh://[user@]host[:port]'."""
    destination = destination.removeprefix("ssh://")
    user, _, host = destination.rpartition("@")
    port = None
    if host.count(":") == 1:
        host, _, port_text = host.partition(":")
        port = int(port_text)
    if not host:
        raise ValueError(f"no host in SSH destination {destination!r}")
    return user or None, host, port


def resolve(destination: str, config: paramiko.SSHConfig, known_hosts: tuple[str, ...] = ()) -> Hop:
    """What `ssh destination` would connect to, from the ssh config."""
    user, alias, port = _split_destination(destination)
    options = config.lookup(alias)
    jumps = options.get("proxyjump", "none")
    files = tuple(os.path.expanduser(f) for f in options.get("userknownhostsfile", "~/.ssh/known_hosts").split())
    return Hop(
        hostname=options.get("hostname", alias),
        port=port or int(options.get("port", 22)),
        user=user or options.get("user"),
        identity_files=tuple(os.path.expanduser(f) for f in options.get("identityfile", [])),
        known_hosts=known_hosts + files,
        jumps=() if jumps.lower() == "none" else tuple(j.strip() for j in jumps.split(",")),
    )


def hops_to(destination: str, config: paramiko.SSHConfig, known_hosts: tuple[str, ...] = (), depth: int = 0) -> list[Hop]:
    """Every server on the way to `destination`, jump hosts first."""
    if depth > 8:
        raise ValueError(f"ProxyJump chain to {destination!r} is too long (a loop?)")
    target = resolve(destination, config, known_hosts)
    hops: list[Hop] = []
    for jump in target.jumps:
        hops += hops_to(jump, config, known_hosts, depth + 1)
    return [*hops, target]


class SSHRunner:
    """Run batch commands on `destination` (``[user@]host[:port]`` or an alias
    from the ssh config) over one persistent connection.

    ``trust_unknown_hosts=True`` accepts and records a host key seen for the
    first time; by default such hosts are refused, like ``StrictHostKeyChecking
    yes``. With ``login_shell`` set, commands run through ``bash -l`` so that site
    profiles (``module``, PATH) apply.
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
    ):
        self._description = {
            "kind": "ssh", "destination": destination, "config_file": config_file, "known_hosts": known_hosts,
            "identity_file": identity_file, "login_shell": login_shell,
        }
        config = paramiko.SSHConfig()
        if config_file and os.path.exists(os.path.expanduser(config_file)):
            config = paramiko.SSHConfig.from_path(os.path.expanduser(config_file))
        extra_known = (os.path.expanduser(known_hosts),) if known_hosts else ()
        self.destination = destination
        self.hops = hops_to(destination, config, extra_known)
        if identity_file:
            target = self.hops[-1]
            self.hops[-1] = Hop(target.hostname, target.port, target.user,
                                (os.path.expanduser(identity_file), *target.identity_files), target.known_hosts)
        self.trust_unknown_hosts = trust_unknown_hosts
        self.login_shell = login_shell
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.reconnect_attempts = reconnect_attempts
        self.timeout = timeout
        self._clients: list[paramiko.SSHClient] = []
        self._connect_lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(max_sessions)
        self._pool = ThreadPoolExecutor(max_workers=max_sessions + 1, thread_name_prefix="jqref-ssh")
        self._forwards: list[PortForward] = []

    def __repr__(self):
        return f"SSHRunner({self.destination!r})"

    def describe(self) -> dict:
        """How to connect again from another process (for `jqref cleanup`)."""
        return dict(self._description)

    # ---- connection --------------------------------------------------------

    def _client_for(self, hop: Hop) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        for path in hop.known_hosts:
            if os.path.exists(path):
                client.load_host_keys(path)
        if self.trust_unknown_hosts:
            client.set_missing_host_key_policy(TrustNewHosts(hop.known_hosts[0]))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return client

    def _open(self) -> None:
        """Connect through every hop; each hop's host key is checked."""
        clients: list[paramiko.SSHClient] = []
        sock = None
        try:
            for i, hop in enumerate(self.hops):
                client = self._client_for(hop)
                clients.append(client)
                client.connect(
                    hop.hostname, hop.port, username=hop.user, key_filename=list(hop.identity_files) or None,
                    sock=sock, timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                    auth_timeout=self.connect_timeout,
                )
                if i + 1 < len(self.hops):
                    nxt = self.hops[i + 1]
                    sock = client.get_transport().open_channel(
                        "direct-tcpip", (nxt.hostname, nxt.port), ("127.0.0.1", 0), timeout=self.connect_timeout
                    )
        except Exception:
            for client in reversed(clients):
                client.close()
            raise
        # paramiko leaves Nagle on: every small command would wait ~40 ms.
        clients[0].get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        clients[-1].get_transport().set_keepalive(int(self.keepalive))
        self._clients = clients

    def _drop(self) -> None:
        for client in reversed(self._clients):
            with contextlib.suppress(Exception):
                client.close()
        self._clients = []

    def _transport(self) -> paramiko.Transport:
        """The live connection, re-opened with backoff if it died. Authentication
        and host-key errors are not retried: they will not fix themselves."""
        with self._connect_lock:
            if self._clients and self._clients[-1].get_transport() and self._clients[-1].get_transport().is_active():
                return self._clients[-1].get_transport()
            self._drop()
            for attempt in range(self.reconnect_attempts):
                try:
                    self._open()
                    return self._clients[-1].get_transport()
                except (paramiko.AuthenticationException, paramiko.BadHostKeyException, paramiko.SSHException) as e:
                    if isinstance(e, (paramiko.AuthenticationException, paramiko.BadHostKeyException)) \
                            or "not found in known_hosts" in str(e):
                        raise
                    error = e
                except OSError as e:
                    error = e
                delay = min(2**attempt, 15)
                logger.warning("SSH to %s failed (%s); retrying in %d s", self.destination, error, delay)
                time.sleep(delay)
            raise ConnectionError(f"cannot reach {self.destination} over SSH: {error}")

    # ---- commands ---------------------------------------------------------

    def _command_line(self, argv: tuple[str, ...], marker: str) -> str:
        inner = f"printf '%s\\n' {marker}; exec {shlex.join(argv)}"
        if self.login_shell:
            return shlex.join(["bash", "-l", "-c", inner])
        return inner

    def _open_channel(self) -> paramiko.Channel:
        """A new channel on the live connection. sshd refuses channels for a
        moment when many just closed (they still count against MaxSessions):
        that is retried on the same connection, which is dropped only if it
        is really dead. Nothing has run yet, so retrying is safe."""
        for attempt in range(5):
            transport = self._transport()
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError):
                if not transport.is_active():
                    self._drop()
                if attempt == 4:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _exec(self, argv: tuple[str, ...], stdin: str | None, timeout: float) -> CommandResult:
        marker = f"jqref-{uuid.uuid4().hex}"
        with self._sessions:
            channel = self._open_channel()
            with channel:
                try:
                    channel.exec_command(self._command_line(argv, marker))
                    if stdin is not None:
                        channel.sendall(stdin.encode())
                    channel.shutdown_write()
                    out, err = self._collect(channel, argv, timeout)
                except (paramiko.SSHException, EOFError, OSError) as e:
                    # Sent, perhaps run: the caller decides whether to look before retrying.
                    if not channel.get_transport().is_active():
                        self._drop()
                    raise ConnectionLost(argv, f"the SSH channel failed: {e}") from e
        head, found, body = out.partition(marker + "\n")
        return CommandResult(argv, channel.recv_exit_status(), body if found else head, err)

    def _collect(self, channel: paramiko.Channel, argv, timeout: float) -> tuple[str, str]:
        """Read stdout and stderr together until the command exits, or give up
        at the deadline: waiting for an exit status alone can hang for ever."""
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            if channel.recv_ready():
                out += channel.recv(65536)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            elif channel.exit_status_ready() and (channel.eof_received or channel.closed):
                # sshd may send the exit status before the last of the output
                # (it reaps the command while the pipe still holds some), but
                # never before EOF: from here on, all of it is buffered.
                if channel.recv_exit_status() == -1:  # closed without an exit status: the link dropped
                    self._drop()
                    raise ConnectionLost(argv, "the SSH connection closed before the command finished")
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                break
            elif channel.closed or not channel.get_transport().is_active():
                self._drop()
                raise ConnectionLost(argv, "the SSH connection closed before the command finished")
            elif time.monotonic() > deadline:
                raise CommandTimeout(argv, timeout)
            else:
                select.select([channel], [], [], 0.05)
        return out.decode(errors="replace"), err.decode(errors="replace")

    async def run(self, argv, *, stdin=None, timeout=None):
        argv = _checked_argv(argv)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._exec, argv, stdin, timeout or self.timeout)

    def run_blocking(self, argv, *, timeout=None):
        return self._exec(_checked_argv(argv), None, timeout or self.timeout)

    @contextlib.asynccontextmanager
    async def script_file(self, text: str):
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

    @contextlib.contextmanager
    def _clients_sftp(self):
        sftp = paramiko.SFTPClient.from_transport(self._transport())
        try:
            yield sftp
        finally:
            sftp.close()

    # ---- long-running commands and port forwards ------------------------

    def spawn(self, argv, *, stdin: str = "") -> RemoteProcess:
        """Start `argv` on the login node and leave it running; `stdin` is sent
        first and stdin then stays open for as long as this connection lives.
        It does not take one of the `max_sessions` command slots."""
        argv = _checked_argv(argv)
        marker = f"jqref-{uuid.uuid4().hex}"
        channel = self._open_channel()
        channel.exec_command(self._command_line(argv, marker))
        if stdin:
            channel.sendall(stdin.encode())
        return RemoteProcess(channel, argv, marker)

    def forward(self, remote_host: str, remote_port: int) -> PortForward:
        """Carry connections to a local port to `remote_host:remote_port` as the
        login node reaches it (``ssh -L``); closed with the runner."""
        forward = PortForward(self, remote_host, remote_port)
        self._forwards.append(forward)
        return forward

    async def close(self):
        for forward in self._forwards:
            forward.close()
        self._drop()
        self._pool.shutdown(wait=False)


class RemoteProcess:
    """A command left running on the login node over its own channel.

    stdout is read line by line (`read_line`); stderr is kept as a short tail
    for error messages. Closing stdin, or losing the connection, is what the
    command sees when its client is gone.
    """

    def __init__(self, channel: paramiko.Channel, argv: tuple[str, ...], marker: str):
        self.channel = channel
        self.argv = argv
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._reader = threading.Thread(target=self._read, args=(marker,), daemon=True, name="jqref-ssh-spawn")
        self._reader.start()

    def _read(self, marker: str) -> None:
        out, err = b"", b""
        started = False
        while True:
            select.select([self.channel], [], [], 0.5)
            got_data = False
            while self.channel.recv_stderr_ready():
                err += self.channel.recv_stderr(65536)
                *lines, err = err.split(b"\n")
                self.stderr_tail.extend(line.decode(errors="replace") for line in lines)
                got_data = True
            if self.channel.recv_ready():
                chunk = self.channel.recv(65536)
                if not chunk:
                    break
                out += chunk
                *lines, out = out.split(b"\n")
                for line in (line.decode(errors="replace") for line in lines):
                    if started:
                        self._lines.put(line)
                    started = started or line == marker
                got_data = True
            if not got_data and (self.channel.closed or self.channel.exit_status_ready()
                                 or not self.channel.get_transport().is_active()):
                break
        self._lines.put(None)

    def read_line(self, timeout: float) -> str:
        """The next line of output; an error with the command's stderr if it
        exited first or said nothing within `timeout` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise CommandTimeout(self.argv, timeout) from None
        if line is None:
            self._lines.put(None)
            status = self.channel.recv_exit_status() if self.channel.exit_status_ready() else -1
            raise CommandError(CommandResult(self.argv, status, "", "\n".join(self.stderr_tail)), "exited")
        return line

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.channel.shutdown_write()

    def wait(self, timeout: float) -> bool:
        """Whether the command exited within `timeout` seconds."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def close(self) -> None:
        self.channel.close()


class PortForward:
    """A local listening port whose connections are carried over the SSH
    connection to a host and port as the login node reaches them."""

    def __init__(self, runner: SSHRunner, remote_host: str, remote_port: int):
        self.runner = runner
        self.remote = (remote_host, remote_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.local_port = self._listener.getsockname()[1]
        self._open: set[tuple[socket.socket, paramiko.Channel]] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"jqref-forward-{self.local_port}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            try:
                channel = self.runner._transport().open_channel("direct-tcpip", self.remote, peer)
            except Exception as e:  # the far end refused or the link is down: this connection fails, not the forward
                logger.warning("forwarding to %s:%d over SSH failed: %s", *self.remote, e)
                conn.close()
                continue
            threading.Thread(target=self._pump, args=(conn, channel), daemon=True).start()

    def _pump(self, conn: socket.socket, channel: paramiko.Channel) -> None:
        pair = (conn, channel)
        self._open.add(pair)
        try:
            while True:
                readable, _, _ = select.select([conn, channel], [], [], 1.0)
                if conn in readable:
                    data = conn.recv(65536)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                if self._closed:
                    break
        except (OSError, EOFError, paramiko.SSHException) as e:
            logger.debug("forwarded connection to %s:%d ended: %s", *self.remote, e)
        finally:
            self._open.discard(pair)
            channel.close()
            conn.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone may not
        self._listener.close()
        for conn, channel in list(self._open):
            channel.close()
            conn.close()
