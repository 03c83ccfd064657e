"""A detached scheduler's session (`placement.session_keeper.Session`) and the
client side of a reconnect (`placement.reconnect`), with a real scheduler, worker
and client in this process: the connection drop is a real closed comm."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import types

import dask.config
import distributed.scheduler
import pytest
from distributed import Client, Scheduler, Worker
from distributed.core import rpc

from jqref.placement import reconnect as client_reconnect
from jqref.placement.login import MAIN_SOURCE
from jqref.placement.session_keeper import Session


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def session_of(scheduler, directory, idle_timeout=60.0, cancel_command=("true",)):
    return Session(scheduler, str(directory), idle_timeout, list(cancel_command), {"address": scheduler.address})


def record_arguments_in(path):
    """A cancel command that writes its arguments to `path`."""
    return [sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))", str(path)]


def running(pid):
    """Whether `pid` runs (a zombie does not: the process that reaps it may not be ours)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_left_alone_for_its_idle_timeout_it_cancels_the_jobs_it_was_told_about_and_closes(tmp_path):
    cancelled = tmp_path / "cancelled"
    record_arguments = record_arguments_in(cancelled)

    async def main():
        async with Scheduler(dashboard_address=":0") as scheduler:
            session = session_of(scheduler, tmp_path, idle_timeout=0.5, cancel_command=record_arguments)
            session.heartbeat(jobs={"11": "w-0", "12": "w-1"})
            assert json.loads((tmp_path / "state.json").read_text())["jobs"] == {"11": "w-0", "12": "w-1"}
            started = time.monotonic()
            await session.expire()
            assert time.monotonic() - started >= 0.5
            return scheduler.status.name

    assert run(main()) == "closed"
    assert cancelled.read_text() == "11 12"
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_detached_scheduler_keeps_its_state_private_and_ended_by_a_signal_cancels_its_jobs_and_leaves_nothing(
    tmp_path, signum
):
    # The scheduler as the login node runs it: detached by the command that starts it, which returns.
    cancelled = tmp_path / "cancelled"
    spec = {
        "options": {"host": "127.0.0.1", "dashboard_address": ":0"},
        "security": None,
        "session": {
            "directory": ".jqref/sessions/s1",
            "idle_timeout": 60,
            "cancel_command": record_arguments_in(cancelled),
        },
    }
    start = subprocess.run(
        [sys.executable, "-c", MAIN_SOURCE],
        input=json.dumps(spec) + "\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert start.returncode == 0, start.stderr
    started = json.loads(start.stdout)
    try:

        async def tell_jobs():
            async with rpc(started["address"]) as scheduler:
                await scheduler.jqref_heartbeat(jobs={"11": "w-0", "12": "w-1"})

        run(tell_jobs())
        session = tmp_path / ".jqref" / "sessions" / "s1"
        private = {path: 0o700 for path in (session.parent.parent, session.parent, session)}
        private |= {session / "state.json": 0o600, session / "scheduler.log": 0o600}
        assert {path: path.stat().st_mode & 0o777 for path in private} == private
        assert json.loads((session / "state.json").read_text())["jobs"] == {"11": "w-0", "12": "w-1"}

        os.kill(started["pid"], signum)
        deadline = time.monotonic() + 30
        while running(started["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(started["pid"])
        assert cancelled.read_text() == "11 12"
        assert not session.exists() and list((tmp_path / ".jqref" / "sessions").iterdir()) == []
    finally:
        if running(started["pid"]):
            os.kill(started["pid"], signal.SIGKILL)


def test_a_client_in_touch_or_a_heartbeat_keeps_it_open_and_a_silent_open_stream_does_not(tmp_path, monkeypatch):
    # Clients in touch every 50 ms instead of every 5 s (the scheduler sets the interval).
    monkeypatch.setattr(distributed.scheduler, "heartbeat_interval", lambda clients: 0.005)

    async def main():
        async with Scheduler(dashboard_address=":0") as scheduler:
            session = session_of(scheduler, tmp_path, idle_timeout=0.3)
            with dask.config.set({"distributed.client.heartbeat": "50ms"}):
                async with Client(scheduler.address, asynchronous=True) as client:
                    await asyncio.sleep(0.5)
                    assert not session.idle(), "a client in touch"
                    client._periodic_callbacks["heartbeat"].stop()  # its process stopped: the stream stays open
                    await asyncio.sleep(0.5)
                    assert session.idle() and client.id in scheduler.client_comms
            session.heartbeat()
            assert not session.idle(), "a cluster object in touch"
            await asyncio.sleep(0.5)
            return session.idle()

    assert run(main()) is True


def test_a_client_whose_connection_drops_gets_its_futures_completed_after_it_reconnects(tmp_path):
    client_reconnect.apply()

    def slowly(x):
        time.sleep(1)
        return x + 1

    async def main():
        async with Scheduler(dashboard_address=":0") as scheduler, Worker(scheduler.address, nthreads=2):
            session_of(scheduler, tmp_path)
            async with Client(scheduler.address, asynchronous=True) as client:
                client.cluster = types.SimpleNamespace(detach=True, idle_timeout=30, status=None)
                done = client.submit(lambda: 41)
                assert await done == 41
                pending = client.submit(slowly, 1)
                while pending.key not in scheduler.tasks:
                    await asyncio.sleep(0.01)
                gathering = asyncio.ensure_future(client.gather([pending, done]))  # waiting through the drop
                await asyncio.sleep(0)
                client.scheduler_comm.comm.abort()  # the connection drops, the scheduler carries on
                assert await gathering == [2, 41]
                assert await pending == 2 and await done == 41
                holders = [c for c in scheduler.clients if c.startswith("jqref-held-")]
                return holders, {ts.key for ts in scheduler.clients[client.id].wants_what} >= {done.key, pending.key}

    assert run(main()) == ([], True)


class Relay:
    """A TCP relay between the client and the scheduler, as sshd is between a
    laptop and a scheduler on the login node: `drop_client_side` ends the
    client's side only, as a connection that died silently does, and the
    scheduler's side stays open; until `accepting` is set again, new
    connections are closed at once (the network is still down)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.accepting = True
        self.client_sides: list[asyncio.StreamWriter] = []
        self.scheduler_sides: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, client_reader, client_writer):
        if not self.accepting:
            client_writer.transport.abort()
            return
        scheduler_reader, scheduler_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.client_sides.append(client_writer)
        self.scheduler_sides.append(scheduler_writer)

        async def pump(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

        await asyncio.gather(
            pump(client_reader, scheduler_writer), pump(scheduler_reader, client_writer), return_exceptions=True
        )

    def drop_client_side(self):
        self.accepting = False
        for writer in self.client_sides:
            writer.transport.abort()
        self.client_sides.clear()


def test_a_client_back_before_the_scheduler_saw_its_connection_die_gets_its_futures_completed(tmp_path):
    # A Wi-Fi change: the client's side of the connection dies, the login
    # node's side does not (sshd notices much later). The task finishes while
    # the client is away, and the client registers again while its old stream
    # still looks open to the scheduler.
    client_reconnect.apply()

    async def main():
        async with (
            Scheduler(host="127.0.0.1", dashboard_address=":0") as scheduler,
            Worker(scheduler.address, nthreads=2),
        ):
            session_of(scheduler, tmp_path)
            relay = Relay(scheduler.port)
            async with Client(await relay.start(), asynchronous=True) as client:
                client.cluster = types.SimpleNamespace(detach=True, idle_timeout=30, status=None)
                pending = client.submit(time.sleep, 0.5, pure=False)
                while pending.key not in scheduler.tasks:
                    await asyncio.sleep(0.01)
                relay.drop_client_side()
                while scheduler.tasks[pending.key].state != "memory":
                    await asyncio.sleep(0.01)
                relay.accepting = True
                await pending
                return pending.status, len(scheduler.client_comms)

    assert run(main()) == ("finished", 1)


def test_without_a_detached_cluster_a_dropped_client_loses_its_futures_as_distributed_does(tmp_path):
    client_reconnect.apply()

    async def main():
        async with Scheduler(dashboard_address=":0") as scheduler, Worker(scheduler.address, nthreads=1):
            async with Client(scheduler.address, asynchronous=True) as client:
                pending = client.submit(time.sleep, 1)
                while pending.key not in scheduler.tasks:
                    await asyncio.sleep(0.01)
                client.scheduler_comm.comm.abort()
                await asyncio.sleep(0.1)
                return pending.status

    assert run(main()) == "cancelled"


@pytest.mark.parametrize("failure", [OSError("refused"), ValueError("IOStream is not idle"), TimeoutError()])
def test_a_client_whose_heartbeats_fail_closes_once_the_scheduler_is_gone_whatever_they_raise(tmp_path, failure):
    """A laptop waking up finds its detached scheduler ended: however the heartbeat
    fails through the dead forward, the loop asks whether the scheduler's state is
    gone and closes the cluster, instead of dying with the exception."""
    from jqref import LocalRunner
    from jqref.placement.detached import keep_alive

    async def heartbeat(jobs):
        raise failure

    closed = []
    session = {"directory": str(tmp_path / "gone")}  # no state.json: the scheduler has ended
    alive = keep_alive(heartbeat, dict, LocalRunner(), session, 3, lambda: closed.append(1))
    asyncio.run(asyncio.wait_for(alive, 30))
    assert closed == [1]


def test_the_scheduler_is_told_of_new_jobs_at_once_and_of_the_same_ones_every_interval(tmp_path):
    """A job submitted just before the client goes must be among those the
    scheduler cancels when left alone: told within a second, not at the next interval."""
    from jqref import LocalRunner
    from jqref.placement.detached import keep_alive

    jobs: dict[str, str] = {}
    told: list[tuple[float, dict]] = []

    async def heartbeat(current):
        told.append((asyncio.get_running_loop().time(), dict(current)))

    async def main():
        alive = asyncio.ensure_future(keep_alive(heartbeat, lambda: jobs, LocalRunner(), {}, 15, print))
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.5)
        jobs["11"] = "w-0"
        await asyncio.sleep(1.5)
        alive.cancel()
        return [(round(at - started), current) for at, current in told]

    assert asyncio.run(main()) == [(0, {}), (1, {"11": "w-0"})]
