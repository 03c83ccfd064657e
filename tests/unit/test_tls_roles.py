"""Roles in a cluster's TLS: the workers' key (in every job script) is not a client's.

Each test runs a real scheduler with jqref.tls_roles as its preload and the
certificates of `cluster_credentials()`; "a peer with the worker's
certificate" is built from the worker's cert and key alone, as from a job
script. JQREF_TLS_ROLES_UNGUARDED=1 starts the schedulers without the
preload: every test of a refusal then fails (the credentials' tests, and the
TLS handshake's, which TLS itself refuses, do not depend on it).
"""

import ast
import asyncio
import contextlib
import json
import logging
import os
import pathlib
import re
import shlex
import ssl
import subprocess
import sys

import dask.config
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from distributed import Client, Nanny, Scheduler, Worker, get_client
from distributed.comm import connect
from distributed.core import rpc
from distributed.protocol.pickle import dumps
from distributed.protocol.serialize import ToPickle, to_serialize
from distributed.security import Security

from jqref import tls_roles
from jqref.job import InlineKeyWarning
from jqref.placement.login import MAIN_SOURCE
from jqref.preload import preload_text
from jqref.slurm import SLURMJob
from jqref.tls import role_options
from jqref.tls_roles import ROLE_NAMES, WORKER_OPS, WORKER_STREAM_OPS, cluster_credentials

GUARD = [] if os.environ.get("JQREF_TLS_ROLES_UNGUARDED") else ["jqref.tls_roles"]
ROLES = ("client", "scheduler", "worker")
DEADLINE = 60


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, DEADLINE))


@pytest.fixture(scope="module")
def security():
    return cluster_credentials()


def presenting(security: Security, role: str) -> Security:
    """A Security that presents `role`'s certificate in every role, as one
    made from a key and certificate copied out of a job script would."""
    cert, key = getattr(security, f"tls_{role}_cert"), getattr(security, f"tls_{role}_key")
    return Security(
        require_encryption=True,
        tls_ca_file=security.tls_ca_file,
        **{f"tls_{r}_{part}": value for r in ROLES for part, value in (("cert", cert), ("key", key))},
    )


def job_security(security: Security) -> Security:
    """What a job gets: the worker's parts alone (jqref.tls.role_options)."""
    return Security(**role_options(security, "worker"))


def guarded_scheduler(security, preload=None):
    return Scheduler(
        host="127.0.0.1", dashboard_address=":0", security=security, preload=GUARD if preload is None else preload
    )


def touch(path):
    """Code run wherever it is unpickled or called: it leaves a file."""
    pathlib.Path(path).touch()
    return os.getuid()


class Touching:
    """Unpickled, it leaves a file: a pickled object is code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return touch, (self.path,)


async def appears(path: pathlib.Path, within: float = 1.0) -> bool:
    for _ in range(int(within / 0.05)):
        if path.exists():
            return True
        await asyncio.sleep(0.05)
    return path.exists()


def refusals(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "jqref.tls_roles" and r.levelno >= logging.WARNING]


# ---- the certificates ---------------------------------------------------------


def test_each_role_has_its_own_certificate_signed_by_the_cluster_ca_which_keeps_no_key(security):
    ca = x509.load_pem_x509_certificate(security.tls_ca_file.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    keys = set()
    for role in ROLES:
        cert = x509.load_pem_x509_certificate(getattr(security, f"tls_{role}_cert").encode())
        cert.verify_directly_issued_by(ca)
        assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [ROLE_NAMES[role]]
        purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert (ExtendedKeyUsageOID.SERVER_AUTH in purposes) == (role != "client")  # a client never listens
        key = getattr(security, f"tls_{role}_key")
        assert key.count("PRIVATE KEY-----") == 2
        keys.add(key)
    assert len(keys) == 3 and security.require_encryption
    # No fourth key (the CA's) anywhere in what the cluster keeps.
    assert (
        sum(str(getattr(security, f)).count("BEGIN PRIVATE KEY") for f in Security.__slots__ if f.startswith("tls_"))
        == 3
    )


def test_a_job_script_carries_the_workers_key_and_neither_the_clients_nor_the_schedulers(security):
    with pytest.warns(InlineKeyWarning, match="inline in the job script"):
        script = SLURMJob("tls://10.0.0.1:8786", "w", cores=1, memory="1GiB", security=security).job_script()
    (line,) = [line for line in script.splitlines() if line.startswith("export ")]
    name, _, value = line.removeprefix("export ").partition("=")
    tls = dask.config.collect_env({name: shlex.split(value)[0]})["distributed"]["comm"]["tls"]
    assert tls["worker"]["key"] == security.tls_worker_key and tls["ca-file"] == security.tls_ca_file
    assert role_options(security, "worker")["tls_worker_key"] == security.tls_worker_key
    for role in ("client", "scheduler"):
        key = getattr(security, f"tls_{role}_key")
        assert key not in str(tls) and key not in str(role_options(security, "worker"))


# ---- what each peer may do ------------------------------------------------------


def test_the_client_computes_on_workers_and_nannies_that_hold_only_the_workers_key_and_tasks_are_no_clients(
    security, caplog
):
    caplog.set_level(logging.WARNING)

    async def main():
        async with (
            guarded_scheduler(security) as scheduler,
            Worker(scheduler.address, nthreads=1, dashboard=False, security=job_security(security)),
            Nanny(scheduler.address, nthreads=1, dashboard=False, security=job_security(security)),
        ):
            async with Client(scheduler.address, security=security, asynchronous=True) as client:
                assert await client.submit(lambda: 1) == 1
                assert sorted(await client.gather(client.map(lambda x: x + 1, range(20)))) == list(range(1, 21))
                assert len(await client.run(os.getpid)) == 2
                assert await client.run_on_scheduler(os.getpid) == os.getpid()
                assert refusals(caplog) == []
                # The cost: a task cannot be a client, as its worker holds the workers' certificate alone.
                in_job = [w for w, ws in scheduler.workers.items() if ws.nanny]
                with pytest.raises(Exception, match="a task cannot start a client"):
                    await client.submit(lambda: get_client(timeout=10).submit(lambda: 1).result(), workers=in_job)
                await client.retire_workers(in_job)
            for _ in range(100):  # the worker closing sent what it sends, to a scheduler that took it
                if len(scheduler.workers) == 1:
                    break
                await asyncio.sleep(0.1)
            assert len(scheduler.workers) == 1

    run(main())
    assert all(re.match("the scheduler refuses '(identity|register-client)'", r) for r in refusals(caplog))


def test_a_client_built_from_the_workers_certificate_cannot_register(security):
    async def main():
        async with guarded_scheduler(security) as scheduler:
            with pytest.raises(Exception, match=r"refuses 'register-client'.*client certificate"):
                async with Client(
                    scheduler.address, security=presenting(security, "worker"), asynchronous=True, timeout=10
                ):
                    pass
            assert list(scheduler.clients) == ["fire-and-forget"]

    run(main())


def test_requests_with_the_workers_certificate_run_code_neither_on_the_scheduler_nor_on_workers(security, tmp_path):
    """run_on_scheduler and client.run, sent the way a Client sends them."""

    async def main():
        async with (
            guarded_scheduler(security) as scheduler,
            Worker(scheduler.address, nthreads=1, dashboard=False, security=job_security(security)),
        ):
            async with Client(scheduler.address, security=security, asynchronous=True) as client:
                client.scheduler = rpc(
                    scheduler.address, connection_args=presenting(security, "worker").get_connection_args("client")
                )
                with pytest.raises(PermissionError, match=r"refuses 'run_function'.*jqref-worker"):
                    await client.run_on_scheduler(touch, str(tmp_path / "scheduler"))
                with pytest.raises(PermissionError, match="refuses 'broadcast'"):
                    await client.run(touch, str(tmp_path / "workers"))
                await client.scheduler.close_rpc()
        assert not (tmp_path / "scheduler").exists() and not (tmp_path / "workers").exists()

    run(main())


def test_a_pickled_object_from_the_workers_certificate_is_not_unpickled(security, tmp_path):
    """The scheduler unpickles ToPickle parts as it reads a message, whatever
    its operation, and the handshake's too: an allowlist alone would not do."""
    args = presenting(security, "worker").get_connection_args("worker")

    async def main():
        async with guarded_scheduler(security) as scheduler:
            comm = await connect(scheduler.address, **args)
            with contextlib.suppress(OSError):
                await comm.write(
                    {"op": "heartbeat_worker", "address": "x", "metrics": ToPickle(Touching(tmp_path / "op"))}
                )
                await asyncio.wait_for(comm.read(), 2)
            assert not await appears(tmp_path / "op")
            with contextlib.suppress(OSError):
                comm = await connect(
                    scheduler.address,
                    timeout=2,
                    handshake_overrides={"pickled": ToPickle(Touching(tmp_path / "handshake"))},
                    **args,
                )
                await asyncio.wait_for(comm.read(), 2)
            assert not await appears(tmp_path / "handshake")
            async with Client(scheduler.address, security=security, asynchronous=True) as client:
                assert await client.run_on_scheduler(os.getpid) == os.getpid()  # and the scheduler serves on

    run(main())


def test_a_stream_opened_with_the_workers_certificate_carries_no_clients_messages(security, tmp_path):
    """connection_stream would open a stream with no worker to it, where a
    client's update-graph (whose graph the scheduler unpickles) works."""

    async def main():
        async with guarded_scheduler(security) as scheduler:
            comm = await connect(scheduler.address, **presenting(security, "worker").get_connection_args("worker"))
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await comm.write({"op": "connection_stream"})
                await comm.write(
                    [
                        {
                            "op": "update-graph",
                            "client": "c",
                            "keys": [],
                            "span_metadata": {},
                            "expr_ser": to_serialize(Touching(tmp_path / "graph")),
                            "internal_priority": None,
                            "submitting_task": None,
                        }
                    ]
                )
                await asyncio.wait_for(comm.read(), 2)
            assert not await appears(tmp_path / "graph")

    run(main())


def test_the_scheduler_does_not_unpickle_what_a_worker_it_connects_to_answers(security, tmp_path):
    """A worker names its own address: the scheduler's requests to it (here
    client.run's) get answers under the worker's certificate."""

    async def main():
        async with (
            guarded_scheduler(security) as scheduler,
            Worker(scheduler.address, nthreads=1, dashboard=False, security=job_security(security)) as worker,
        ):
            worker.handlers["run"] = lambda comm, **kwargs: {
                "status": "OK",
                "result": ToPickle(Touching(tmp_path / "answer")),
            }
            async with Client(scheduler.address, security=security, asynchronous=True) as client:
                with pytest.raises(OSError):
                    await client.run(os.getpid)
            assert not await appears(tmp_path / "answer")

    run(main())


def test_a_handler_added_after_the_scheduler_started_is_guarded_too(security):
    """As jqref's detached session adds jqref_heartbeat and replaces register-client."""

    async def main():
        async with guarded_scheduler(security) as scheduler:
            scheduler.handlers["jqref_test"] = lambda comm=None: "served"
            async with rpc(scheduler.address, connection_args=security.get_connection_args("client")) as owner:
                assert await owner.jqref_test() == "served"
            args = presenting(security, "worker").get_connection_args("worker")
            async with rpc(scheduler.address, connection_args=args) as other:
                with pytest.raises(PermissionError, match="refuses 'jqref_test'"):
                    await other.jqref_test()

    run(main())


def test_a_tls_client_without_a_certificate_of_the_cluster_is_refused_at_the_handshake(security):
    """TLS's own doing, with these certificates. The client's context is
    Python's default, strict one: the scheduler's certificate passes it."""
    context = ssl.create_default_context(cadata=security.tls_ca_file)
    context.check_hostname = False
    another_clusters = cluster_credentials().get_connection_args("client")

    async def main():
        async with guarded_scheduler(security) as scheduler:
            with pytest.raises(OSError, match="certificate required"):
                await connect(scheduler.address, timeout=2, ssl_context=context, require_encryption=True)
            with pytest.raises(OSError):
                await connect(scheduler.address, timeout=2, **another_clusters)
            assert list(scheduler.clients) == ["fire-and-forget"]

    run(main())


def test_the_preload_text_guards_a_scheduler_as_the_module_does(security):
    """A scheduler on the login node gets this source as text (jqref.preload)."""

    async def main():
        async with guarded_scheduler(security, preload=[preload_text(tls_roles)] if GUARD else []) as scheduler:
            async with Client(scheduler.address, security=security, asynchronous=True):
                pass
            async with rpc(
                scheduler.address, connection_args=presenting(security, "worker").get_connection_args("client")
            ) as other:
                with pytest.raises(PermissionError, match="refuses 'identity'"):
                    await other.identity()

    run(main())


def test_a_scheduler_started_as_on_the_login_node_is_guarded_without_jqref(security):
    """jqref's login-node scheduler (its source run with python -c) in a
    process where jqref cannot be imported, given the preload text and the
    scheduler's part of the credentials, as LoginNodeScheduler gives them."""
    preload = [preload_text(tls_roles)] if GUARD else []
    spec = {
        "options": {"host": "127.0.0.1", "dashboard_address": ":0", "preload": preload},
        "security": role_options(security, "scheduler"),
        "session": None,
    }
    source = "import sys; sys.modules['jqref'] = None  # not installed there\n" + MAIN_SOURCE
    process = subprocess.Popen([sys.executable, "-c", source], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        process.stdin.write(json.dumps(spec) + "\n")
        process.stdin.flush()
        started = json.loads(process.stdout.readline())

        async def main():
            async with Client(started["address"], security=security, asynchronous=True) as client:
                assert await client.run_on_scheduler(os.getpid) == started["pid"] == process.pid
            async with rpc(
                started["address"], connection_args=presenting(security, "worker").get_connection_args("client")
            ) as other:
                with pytest.raises(PermissionError, match="refuses 'run_function'"):
                    await other.run_function(function=dumps(os.getpid), args=dumps(()), kwargs=dumps({}))

        run(main())
    finally:
        process.stdin.close()  # which ends it
        process.wait(DEADLINE)


def test_on_the_login_node_the_preload_needs_only_distributed():
    tree = ast.parse(pathlib.Path(tls_roles.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert imported - set(sys.stdlib_module_names) == {"distributed"}


def test_the_allowlists_name_operations_this_distributed_serves():
    """A rename in a newer distributed would otherwise refuse workers quietly."""

    async def main():
        async with Scheduler(host="127.0.0.1", dashboard_address=":0") as scheduler:
            assert set(scheduler.handlers) >= WORKER_OPS
            assert set(scheduler.stream_handlers) >= WORKER_STREAM_OPS

    run(main())


def test_on_a_stream_a_worker_opened_only_workers_messages_are_served():
    """Defence in depth: the worker's stream passes worker= to each handler,
    which the clients' handlers happen not to take."""
    hooks = tls_roles._process_hooks()
    handlers = tls_roles._RoleStreamHandlers({"update-graph": "client's", "task-finished": "worker's"}, hooks)
    assert handlers["update-graph"] == "client's"
    token = hooks.stream_role.set(ROLE_NAMES["worker"])
    try:
        assert handlers["task-finished"] == "worker's"
        with pytest.raises(OSError, match="refuses stream message 'update-graph'"):
            handlers["update-graph"]
    finally:
        hooks.stream_role.reset(token)
