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
import json
import os
import shutil
import signal
import sys
import threading

from distributed import Scheduler
from distributed.security import Security
from distributed.utils import get_ip

try:  # a module of jqref; sent as source, the keeper's source goes ahead of it (`login.MAIN_SOURCE`)
    from .session_keeper import Session, make_private_directories, started_state
except ImportError:
    pass


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


async def serve(spec, announce=sys.stdout):
    security = Security(**spec["security"]) if spec.get("security") else None
    session = spec.get("session")
    options = spec["options"]
    if "host" not in options and "interface" not in options:
        # The address workers reach it at, rather than every interface of a shared login node.
        options["host"] = get_ip()
    async with Scheduler(security=security, **options) as scheduler:
        started = started_state(scheduler, spec["security"]["tls_scheduler_cert"] if security is not None else None)
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
    make_private_directories(directory)
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
