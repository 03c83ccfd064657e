"""What a detached scheduler keeps, wherever it runs (``detach=True``).

Its state file (address, pid and start, certificate fingerprint, the jobs
it was last told about), a bound on how long it runs unattended, and the
keys of clients whose connection dropped. Needs nothing but Python and
distributed, which the workers need anyway: on the login node its source
is sent ahead of `login_main`'s (`login.MAIN_SOURCE`); in a scheduler's
batch job (``scheduler_on="job"``) it is a preload file, configured by
the command-line options `preload_arguments` gives, and ends the job by
closing the scheduler.
"""

import asyncio
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import click
from distributed.diagnostics.plugin import SchedulerPlugin


def process_start(stat):
    """When a process started, from its /proc/<pid>/stat line (field 22, clock
    ticks since boot). With its pid it names one process, where the pid alone
    may be another process's once the first has ended."""
    return stat.rpartition(")")[2].split()[19]


def own_process_start():
    """This process's start (see `process_start`); None where there is no /proc."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            return process_start(f.read())
    except OSError:
        return None


def certificate_fingerprint(pem):
    """What an attaching client compares with the certificate it holds."""
    return hashlib.sha256(pem.strip().encode()).hexdigest()


def started_state(scheduler, certificate_pem=None):
    """What a client reads to reach the scheduler: its address, dashboard
    port, process and (with TLS) its certificate's fingerprint."""
    dashboard = scheduler.services.get("dashboard")
    started = {
        "address": scheduler.address,
        "dashboard_port": dashboard.port if dashboard else None,
        "pid": os.getpid(),
        "process_start": own_process_start(),
    }
    if certificate_pem is not None:
        started["certificate"] = certificate_fingerprint(certificate_pem)
    return started


def make_private_directories(directory, base="."):
    """Make `directory` (relative to `base`) and each level of it the user's alone, as makedirs would not."""
    parts = directory.split("/")
    for depth in range(1, len(parts) + 1):
        level = os.path.join(base, *parts[:depth])
        os.makedirs(level, mode=0o700, exist_ok=True)
        os.chmod(level, 0o700)


def write_private(path, data):
    """Replace the JSON file at `path` atomically, readable by the user alone."""
    partial = f"{path}.partial"
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(data, f)
    os.replace(partial, path)


class Session(SchedulerPlugin):
    """What a detached scheduler keeps: its state file, a bound on how long it
    runs unattended, and the keys of clients whose connection dropped."""

    name = "jqref-session"

    def __init__(self, scheduler, directory, idle_timeout, cancel_command, started):
        self.scheduler = scheduler
        self.state_path = os.path.join(directory, "state.json")
        self.idle_timeout = idle_timeout
        self.cancel_command = cancel_command
        self.state = {**started, "jobs": {}}
        self.last_contact = time.time()
        self._returning = set()
        self._release_keys = scheduler.remove_client
        scheduler.remove_client = self.hold_then_remove_client
        self._register = scheduler.handlers["register-client"]
        scheduler.handlers["register-client"] = self.register_again
        scheduler.handlers["jqref_heartbeat"] = self.heartbeat
        scheduler.add_plugin(self)
        write_private(self.state_path, self.state)

    def heartbeat(self, comm=None, jobs=None):
        """A cluster object is in touch; `jobs` maps its job ids to worker names."""
        self.last_contact = time.time()
        if jobs is not None and jobs != self.state["jobs"]:
            self.state["jobs"] = jobs
            write_private(self.state_path, self.state)
        return {"idle_timeout": self.idle_timeout}

    @staticmethod
    def holder(client):
        return f"jqref-held-{client}"

    def hold_then_remove_client(self, client, stimulus_id=None):
        """A client's stream ended without it closing (the connection dropped):
        what it wanted stays wanted, by a stand-in, until it is back."""
        state = self.scheduler.clients.get(client)
        if state is not None and state.wants_what and self.scheduler.status.name == "running":
            self.scheduler.client_desires_keys([ts.key for ts in state.wants_what], self.holder(client))
            loop = asyncio.get_running_loop()
            loop.call_later(self.idle_timeout, self._release_held, client)
        self._release_keys(client, stimulus_id=stimulus_id)

    async def register_again(self, comm, client=None, versions=None):
        """A client registering while its old stream still looks open: that
        connection died without the scheduler seeing it (sshd, between the
        two, has not noticed yet). End the old stream first, which holds what
        the client wanted, so that the new one gets it back."""
        old = self.scheduler.client_comms.get(client)
        if old is not None:
            old.abort()
            deadline = time.monotonic() + 10
            while client in self.scheduler.client_comms and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        return await self._register(comm, client=client, versions=versions)

    def add_client(self, scheduler, client):
        if self.holder(client) in scheduler.clients:
            task = asyncio.ensure_future(self._return_held(client))
            self._returning.add(task)  # held until done: the event loop keeps only weak references to tasks
            task.add_done_callback(self._returning.discard)

    async def _return_held(self, client):
        # The client expects its stream's first batch to be "stream-start" alone:
        # what is reported on its keys goes after that batch was sent.
        while getattr(self.scheduler.client_comms.get(client), "batch_count", 1) == 0:
            await asyncio.sleep(0.01)
        held = self.scheduler.clients.get(self.holder(client))
        if held is not None and client in self.scheduler.clients:
            self.scheduler.client_desires_keys([ts.key for ts in held.wants_what], client)
            self._release_held(client)

    def _release_held(self, client):
        if self.holder(client) in self.scheduler.clients:
            self._release_keys(self.holder(client))

    def idle(self):
        """Whether nobody has been in touch for `idle_timeout`: no cluster
        object's heartbeat, no client's (a Client sends one every 5 s). An
        open stream alone does not count: the stream of a laptop that went to
        sleep stays open here until sshd notices, hours later."""
        clients = [
            state.last_seen
            for state in self.scheduler.clients.values()
            if state.client_key in self.scheduler.client_comms
        ]
        return time.time() - max([self.last_contact, *clients]) > self.idle_timeout

    async def expire(self):
        """Close once nobody has been in touch for `idle_timeout`, cancelling the jobs first."""
        while not self.idle():
            await asyncio.sleep(min(5, self.idle_timeout / 4))
        await self.end(f"no client for {self.idle_timeout:g} s")

    async def end_on(self, signal_name):
        """Close on a signal as when left idle, so that the process exits through its cleanup."""
        await self.end(f"got {await signal_name}")

    async def end(self, why):
        print(f"{why}: cancelling {len(self.state['jobs'])} job(s) and closing", file=sys.stderr, flush=True)
        if self.state["jobs"]:
            await asyncio.to_thread(subprocess.run, [*self.cancel_command, *self.state["jobs"]])
        await self.scheduler.close()


# ---- as a preload, in a scheduler's batch job ------------------------------------------

#: The session's directory, for `dask_teardown` to remove once the scheduler has closed.
_directories: dict[int, str] = {}
#: Sessions' expiry tasks, held until done: the event loop keeps only weak references to tasks.
_expiring: set[asyncio.Future] = set()


def preload_arguments(directory, idle_timeout, cancel_command):
    """The `dask scheduler` arguments that configure this preload: they follow all the command's own."""
    return [
        "--jqref-session",
        directory,
        "--jqref-idle-timeout",
        f"{idle_timeout:g}",
        "--jqref-cancel-command",
        shlex.join(cancel_command),
    ]


@click.command()
@click.option("--jqref-session", "directory", required=True, help="the session's directory, in the home")
@click.option("--jqref-idle-timeout", "idle_timeout", type=float, required=True, help="seconds alone before it ends")
@click.option("--jqref-cancel-command", "cancel_command", required=True, help="cancels jobs (shell words)")
def dask_setup(scheduler, directory, idle_timeout, cancel_command):
    """Keep the session of the scheduler in this batch job: it ends, and so
    its job does, after `idle_timeout` seconds alone, cancelling the jobs it
    was told about. Its directory is removed when it closes."""
    home = os.path.expanduser("~")
    make_private_directories(directory, home)
    directory = os.path.join(home, directory)
    certificate = scheduler.security.tls_scheduler_cert
    pem = None
    if certificate:
        with open(certificate) as f:
            pem = f.read()
    session = Session(scheduler, directory, idle_timeout, shlex.split(cancel_command), started_state(scheduler, pem))
    _directories[id(scheduler)] = directory
    task = asyncio.ensure_future(session.expire())
    _expiring.add(task)
    task.add_done_callback(_expiring.discard)


def dask_teardown(scheduler):
    """The scheduler has closed: nothing of its session stays."""
    directory = _directories.pop(id(scheduler), None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
