"""A detached cluster's session, from the client's side (``detach=True``).

The scheduler on the login node keeps the session's state in
``~/.jqref/sessions/<id>/state.json`` (see `login_main`): its
address, pid and start time, jobs and the fingerprint of its certificate. A
client reads it to attach, checks that the scheduler there is the one whose
certificate it holds, and keeps telling the scheduler it is alive. When a
client finds the state gone, the scheduler has ended: closed by another
client, or by itself after its idle timeout while this one was away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..runners import CommandError, Runner
from ..tls import security_contents
from .session_keeper import certificate_fingerprint, process_start

if TYPE_CHECKING:
    from distributed.security import Security

logger = logging.getLogger(__name__)


def detached_session(cluster_cls: type, record_id: str, options: dict[str, Any], security: Security) -> dict[str, Any]:
    """A detached cluster's session: what `attach` makes it again from. The
    options must be plain data (they are written as JSON)."""
    options = {k: v for k, v in options.items() if v is not None}
    try:
        json.dumps(options)
    except TypeError as e:
        raise TypeError(
            f"detach=True records the cluster's options to attach to it later, and they must be plain "
            f"data (strings, numbers, lists, dicts): {e}"
        ) from None
    return {
        "cluster_class": f"{cluster_cls.__module__}.{cluster_cls.__qualname__}",
        "directory": f".jqref/sessions/{record_id}",
        "options": options,
        "security": security_contents(security),
        "started": time.time(),
    }


def state_path(directory: str) -> str:
    return f"{directory}/state.json"


def read_state(runner: Runner, session: dict[str, Any]) -> dict[str, Any]:
    """The state a detached scheduler keeps on the login node, checked
    against the certificate this client holds; a `LookupError` if it is gone."""
    where = getattr(runner, "destination", "this machine")
    result = runner.run_blocking(["cat", state_path(session["directory"])])
    if not result.ok:
        raise LookupError(
            f"the detached scheduler is gone from {where} ({result.stderr.strip()}): "
            "it was closed, or closed itself after its idle timeout"
        )
    state = json.loads(result.stdout)
    if state.get("certificate") != certificate_fingerprint(session["security"]["tls_scheduler_cert"]):
        raise PermissionError(
            f"the scheduler in {session['directory']} on {where} does not have "
            "this session's certificate: it is not the one this session started"
        )
    return state


def stop_scheduler(runner: Runner, session: dict[str, Any]) -> str:
    """Stop the session's scheduler and say what happened; a `RuntimeError` if
    it could not be stopped, a `PermissionError` if the scheduler there is
    another session's. Its pid is trusted only while the process with that pid
    started when the scheduler did: a scheduler killed outright (SIGKILL, a
    reboot) leaves its state behind, and its pid may be another process's by now."""
    where = getattr(runner, "destination", "this machine")
    try:
        state = read_state(runner, session)
    except LookupError:
        return "its detached scheduler had ended already"
    pid = state["pid"]
    if state.get("process_start") is not None:  # None: no /proc there, the pid alone says which process
        started = process_start_of(runner, pid)
        if started != state["process_start"]:
            now = "no longer runs" if started is None else "is another process's now"
            removed = runner.run_blocking(["rm", "-rf", "--", session["directory"]])
            left = "removed" if removed.ok else f"could not be removed: {removed.stderr.strip()}"
            return (
                f"its detached scheduler was gone, so nothing was stopped: pid {pid} on {where} {now}; "
                f"the state it left in {session['directory']} {left}"
            )
    stop = runner.run_blocking(["kill", str(pid)])
    if not stop.ok:
        raise RuntimeError(f"could not stop the detached scheduler (pid {pid} on {where}): {stop.stderr.strip()}")
    return f"its detached scheduler (pid {pid} on {where}) was stopped"


def process_start_of(runner: Runner, pid: int) -> str | None:
    """When process `pid` started, where `runner` runs commands; None if no process has that pid."""
    result = runner.run_blocking(["cat", f"/proc/{pid}/stat"])
    return process_start(result.stdout) if result.ok else None


async def ended(runner: Runner, session: dict[str, Any]) -> bool:
    """Whether the session's scheduler is known to have ended (False when the login node cannot say)."""
    try:
        result = await runner.run(["test", "-e", state_path(session["directory"])])
    except (CommandError, ConnectionError):
        return False
    return result.returncode == 1


#: How long one heartbeat may take before it counts as failed.
HEARTBEAT_TIMEOUT = 30.0
#: How often the client's jobs are compared with those the scheduler was last told about.
JOBS_CHECK_INTERVAL = 1.0


async def keep_alive(
    heartbeat: Callable[[dict[str, Any]], Awaitable[object]],
    jobs: Callable[[], dict[str, Any]],
    runner: Runner,
    session: dict[str, Any],
    idle_timeout: float,
    on_ended: Callable[[], None],
) -> None:
    """Tell the detached scheduler that its client is alive, with the
    client's `jobs` (ids to worker names) for the scheduler to cancel if it
    is ever left alone: every few seconds, and as soon as they change, so
    that a job submitted just before the client went is not forgotten. If
    the scheduler has ended meanwhile, `on_ended`: there is nothing left to control."""
    interval = min(idle_timeout / 3, 10)
    loop = asyncio.get_running_loop()
    told: dict[str, Any] | None = None
    last = -math.inf
    while True:
        current = jobs()
        if current != told or loop.time() - last >= interval:
            told, last = dict(current), loop.time()  # a failed heartbeat is retried at the next interval, not at once
            try:
                await asyncio.wait_for(heartbeat(current), HEARTBEAT_TIMEOUT)
            except Exception as e:
                # The connection is down or refused (an OSError, a timeout, or tornado's ValueError on a
                # forward the login node refused): the next heartbeat counts, unless the scheduler is gone.
                # Whatever the heartbeat raises, this loop must go on: it is what notices the scheduler's end.
                logger.debug("heartbeat to the detached scheduler failed: %r", e)
                if await ended(runner, session):
                    logger.error(
                        "the detached scheduler on %s (%s) has ended (closed elsewhere, or after %g s without a "
                        "client): closing the cluster",
                        getattr(runner, "destination", "this machine"),
                        session["directory"],
                        idle_timeout,
                    )
                    on_ended()
                    return
        await asyncio.sleep(JOBS_CHECK_INTERVAL)
