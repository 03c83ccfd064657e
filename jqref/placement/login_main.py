"""A Dask scheduler on the login node. Its source is sent with ``python -c``,
so it needs nothing on the login node but Python and distributed, which the
workers need anyway.

Protocol: one JSON line on stdin, ``{"options": <Scheduler kwargs>,
"security": <Security kwargs with PEM contents> or null, "session": null or
{"directory", "idle_timeout", "cancel_command"}}``; one JSON line on stdout
once the scheduler listens, ``{"address", "dashboard_port", "pid",
"process_start"}`` (and "certificate", its certificate's SHA-256, with TLS).

Without a session the scheduler lives as long as the SSH channel: it closes
when stdin does (the client closed it, or the connection is gone).

With one it is detached: it runs in a session of its own, logging to
``<directory>/scheduler.log``, that line and its jobs in
``<directory>/state.json`` (both private to the user), and the command
that started it returns. It ends when a client closes it, or when no client
has been connected and no cluster object has sent a heartbeat for
`idle_timeout` seconds, or on SIGTERM or SIGINT (``jqref cleanup`` sends
SIGTERM): then it cancels the jobs it was last told about. Ended any of
these ways, it leaves nothing behind in `directory`.
A client whose connection drops keeps what it wanted held until it
connects again, so that its futures complete after a reconnect.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from distributed import Scheduler
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.security import Security
from distributed.utils import get_ip


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


def signalled() -> asyncio.Future[str]:
    """A future set to the name of the first SIGTERM or SIGINT this process gets,
    which then no longer kills it outright."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()

    def receive(name: str) -> None:
        if not received.done():
            received.set_result(name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, receive, signum.name)
    return received


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


async def serve(spec, announce=sys.stdout):
    security = Security(**spec["security"]) if spec.get("security") else None
    session = spec.get("session")
    options = spec["options"]
    if "host" not in options and "interface" not in options:
        # The address workers reach it at, rather than every interface of a shared login node.
        options["host"] = get_ip()
    async with Scheduler(security=security, **options) as scheduler:
        dashboard = scheduler.services.get("dashboard")
        started = {
            "address": scheduler.address,
            "dashboard_port": dashboard.port if dashboard else None,
            "pid": os.getpid(),
            "process_start": own_process_start(),
        }
        if security is not None:  # what an attaching client checks (jqref.placement.detached.certificate_fingerprint)
            started["certificate"] = hashlib.sha256(spec["security"]["tls_scheduler_cert"].strip().encode()).hexdigest()
        if session:
            signal_name = signalled()  # before the state exists: a signal from then on ends the scheduler cleanly
            detached = Session(
                scheduler, session["directory"], session["idle_timeout"], session["cancel_command"], started
            )
            ends = [detached.expire(), detached.end_on(signal_name)]
        else:
            ends = [stdin_closed()]
        print(json.dumps(started), file=announce, flush=True)
        waiting = [asyncio.ensure_future(end) for end in (*ends, scheduler.finished())]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)


async def stdin_closed():
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def wait_for_eof():
        sys.stdin.read()
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    await closed.wait()


def detach(spec):
    """Run the scheduler in a new session, away from the SSH channel; pass its
    first line on and return, which ends the channel."""
    directory = spec["session"]["directory"]
    parts = directory.split("/")
    for depth in range(1, len(parts) + 1):  # each level private, as makedirs would not make them
        level = "/".join(parts[:depth])
        os.makedirs(level, mode=0o700, exist_ok=True)
        os.chmod(level, 0o700)
    log_path = os.path.join(directory, "scheduler.log")
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.close(read_end)
        os.setsid()
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            asyncio.run(serve(spec, announce=os.fdopen(write_end, "w")))
        finally:
            if os.path.exists(os.path.join(directory, "state.json")):  # it ran: nothing of it stays
                shutil.rmtree(directory, ignore_errors=True)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as child:
        line = child.readline()
    if not line:  # it never listened: say why, and leave nothing
        with contextlib.suppress(OSError), open(log_path) as log_file:
            line = log_file.read()[-4000:]
        shutil.rmtree(directory, ignore_errors=True)
        sys.exit(line or "the detached scheduler exited before it listened")
    sys.stdout.write(line)


if __name__ == "__main__":
    spec = json.loads(sys.stdin.readline())
    if spec.get("session"):
        detach(spec)
    else:
        asyncio.run(serve(spec))
