"""Run scheduler commands: an argv list in, exit code and output out.

Scheduler modules only build argv lists; a runner decides where they run.
`LocalRunner` runs them on this machine; the SSH runner runs them on a login
node. Neither ever goes through a shell, so no value can be injected into one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> CommandResult:
        """Return self, or raise `CommandError` if the command failed."""
        if not self.ok:
            raise CommandError(self)
        return self


class CommandError(RuntimeError):
    """A scheduler command failed; the message carries its stderr."""

    def __init__(self, result: CommandResult, what: str = "failed"):
        self.result = result
        #: What went wrong, in words that follow the command line.
        self.what = what
        output = result.stderr.strip() or result.stdout.strip() or "(no output)"
        super().__init__(f"{shlex.join(result.argv)} {what} (exit {result.returncode}): {output}")


class CommandTimeout(CommandError):
    """A command gave no answer in time and was ended: it may or may not have
    taken effect (a submit command may have queued its job first)."""

    def __init__(self, argv: Sequence[str], timeout: float):
        super().__init__(
            CommandResult(tuple(argv), -1, "", f"no answer within {timeout:g} s"),
            what="timed out",
        )
        #: The command's process on the remote host, if it had started (SSH).
        self.remote_pid: int | None = None


class ConnectionLost(CommandError):
    """The connection to the login node dropped while a command ran: it may or
    may not have taken effect."""

    def __init__(self, argv: Sequence[str], reason: str, remote_pid: int | None = None):
        super().__init__(CommandResult(tuple(argv), -1, "", reason), what="was interrupted by a lost connection")
        #: The command's process on the remote host, if it had started: it
        #: may still be running there, and finish what it was doing.
        self.remote_pid = remote_pid


class Runner(Protocol):
    """Where scheduler commands run."""

    async def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None
    ) -> CommandResult: ...

    def run_blocking(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        """For interpreter exit, when no event loop is left to run `run`."""
        ...

    def script_file(self, text: str) -> contextlib.AbstractAsyncContextManager[str]:
        """A private file holding `text` where the commands run, removed afterwards."""
        ...

    async def write_private_files(
        self, directory: str, files: Mapping[str, str], *, private_directory: bool
    ) -> dict[str, str]:
        """Write `files` (name to text) into `directory` where the commands run,
        each readable by the user alone (0600); the directory is made if
        missing, and made the user's alone (0700) if `private_directory`. A
        relative directory is the home's. Returns each name's absolute path."""
        ...

    async def remove_files(self, paths: Sequence[str]) -> None:
        """Remove `paths` where the commands run; those already gone are no error."""
        ...

    async def close(self) -> None: ...


def _checked_argv(argv: Sequence[str]) -> tuple[str, ...]:
    if isinstance(argv, str) or not argv:
        raise TypeError(f"a command must be a non-empty list of arguments, got {argv!r}")
    return tuple(str(arg) for arg in argv)


#: How long a command's process group may take to go once killed: a process
#: that left the group may still hold its output open.
KILLED_GROUP_GRACE = 5.0


def _kill_group(pid: int) -> None:
    """End a timed-out command and everything it started: a site wrapper's
    child holding the command's output must not keep the caller waiting."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class LocalRunner:
    """Run commands on this machine with asyncio subprocesses (no shell).
    Each command leads a process group of its own, ended whole on timeout."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout

    async def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None
    ) -> CommandResult:
        args = _checked_argv(argv)
        timeout = timeout or self.timeout
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            return CommandResult(args, 127, "", f"cannot run {args[0]}: {e.strerror}")
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), KILLED_GROUP_GRACE)
            raise CommandTimeout(args, timeout) from None
        # communicate() returned once the process ended: wait() has its exit code at once.
        returncode = await proc.wait()
        return CommandResult(args, returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def run_blocking(self, argv: Sequence[str], *, timeout: float | None = None) -> CommandResult:
        args = _checked_argv(argv)
        timeout = timeout or self.timeout
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except OSError as e:
            return CommandResult(args, 127, "", f"cannot run {args[0]}: {e.strerror}")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(KILLED_GROUP_GRACE)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:  # both are pipes
                    stream.close()
            raise CommandTimeout(args, timeout) from None
        return CommandResult(args, proc.returncode, out, err)

    async def write_private_files(
        self, directory: str, files: Mapping[str, str], *, private_directory: bool
    ) -> dict[str, str]:
        folder = os.path.join(os.path.expanduser("~"), os.path.expanduser(directory))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if private_directory:
            os.chmod(folder, 0o700)
        paths = {}
        for name, text in files.items():
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            paths[name] = path
        return paths

    async def remove_files(self, paths: Sequence[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @contextlib.asynccontextmanager
    async def script_file(self, text: str) -> AsyncIterator[str]:
        fd, path = tempfile.mkstemp(prefix="jqref-", suffix=".sh")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            yield path
        finally:
            os.unlink(path)

    async def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "LocalRunner()"
