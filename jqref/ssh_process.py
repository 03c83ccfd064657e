"""A command left running on the login node (`SSHRunner.spawn`, e.g. a Dask
scheduler), read while it runs instead of collected when it exits."""

from __future__ import annotations

import contextlib
import queue
import select
import threading
from collections import deque

import paramiko

from .runners import CommandError, CommandResult, CommandTimeout


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
                    started = started or line.startswith(f"{marker} ")  # "<marker> <pid>"
                got_data = True
            if not got_data and (
                self.channel.closed or self.channel.exit_status_ready() or not self.channel.get_transport().is_active()
            ):
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
