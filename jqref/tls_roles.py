"""Roles in a cluster's TLS: what the workers' key, which job scripts carry, can do.

distributed's ``Security.temporary()`` gives one key and certificate to every
role, so the workers' key is also a client's: copied out of a job script, it
connects to the scheduler and runs code there and on every worker
(``run_on_scheduler``, ``submit``, ``client.run``). `cluster_credentials()`
gives each role its own certificate instead, signed by a CA made for the
cluster (whose key is dropped once the three are signed), with the role as
the subject's common name; `dask_setup` makes a scheduler serve each peer
according to the certificate it presented:

- ``jqref-client`` and ``jqref-scheduler``: everything, as before.
- ``jqref-worker``: only what workers and nannies send a scheduler
  (`WORKER_OPS`, `WORKER_STREAM_OPS`), and never a pickled object.
- no certificate of a role (a listener without TLS): nothing.

Refusing pickles matters as much as the allowlist: distributed's scheduler
unpickles every ``ToPickle`` part of a message as it reads it, before it
looks at the operation (``distributed.protocol.core.loads``), the comm
handshake included. Workers and nannies never send one. So a message from a
worker-certified peer that carries one is refused and the connection
dropped; so is one from a worker the scheduler connected to (a worker names
its own address when it registers).

What the worker key still does: register a worker, which receives tasks and
their data and answers with results and errors that clients unpickle, and
talk to workers, which unpickle what other workers send. It no longer runs
code on the scheduler, nor does anything a client does.

The scheduler side runs where the scheduler runs, on a login node without
jqref: it needs only distributed, and this source is also the text of a
scheduler preload. It must be the scheduler's first preload (see
`dask_setup`). Making the certificates needs ``cryptography``, as
``Security.temporary`` does, on the client's machine only.
"""

from __future__ import annotations

import contextvars
import datetime
import inspect
import logging
import ssl
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import distributed.protocol
from distributed.comm.core import CommClosedError
from distributed.comm.tcp import TCP, TLS
from distributed.core import Status, error_message
from distributed.protocol import core as protocol_core
from distributed.protocol.serialize import ToPickle
from distributed.security import Security

if TYPE_CHECKING:
    from distributed.core import ErrorMessage

logger = logging.getLogger("jqref.tls_roles")

#: The common name of each role's certificate.
ROLE_NAMES = {"client": "jqref-client", "scheduler": "jqref-scheduler", "worker": "jqref-worker"}
#: Peers served as distributed serves any peer.
UNRESTRICTED = frozenset({ROLE_NAMES["client"], ROLE_NAMES["scheduler"]})

# What a worker and a nanny send the scheduler, in distributed 2026.8.0 (read
# from its source; tests/unit/test_tls_roles.py checks each is still a handler):
#: Requests, each on a connection of its own (``Server.handlers``).
WORKER_OPS = frozenset(
    {
        # worker.py: Worker._register_with_scheduler, heartbeat, the who_has of
        # gather_dep, close_gracefully, set_resources
        "register-worker",
        "heartbeat_worker",
        "who_has",
        "retire_workers",
        "set_resources",
        # nanny.py: Nanny.start_unsafe, close, _log_event
        "register_nanny",
        "unregister",
        "log_event",
        # shuffle/_worker_plugin.py and shuffle/_core.py: P2P shuffles
        "shuffle_get",
        "shuffle_get_or_create",
        "shuffle_barrier",
        "shuffle_restrict_task",
    }
)
#: Messages on the stream a worker opens with "register-worker"
#: (``Server.stream_handlers``): worker.py's batched_send calls and the
#: ``SendMessageToScheduler`` instructions of worker_state_machine.py.
WORKER_STREAM_OPS = frozenset(
    {
        "keep-alive",
        "log-event",
        "worker-status-change",
        "task-finished",
        "task-erred",
        "release-worker-data",
        "reschedule",
        "long-running",
        "add-keys",
        "request-refresh-who-has",
        "steal-response",
    }
)
_ALLOWED_OPS = {ROLE_NAMES["worker"]: WORKER_OPS}
_ALLOWED_STREAM_OPS = {ROLE_NAMES["worker"]: WORKER_STREAM_OPS}


# ---- the certificates (where the cluster object runs) -----------------------


def cluster_credentials(**kwargs) -> Security:
    """A `Security` with a certificate per role, signed by a CA made for this
    cluster, all in memory as PEM contents. The CA's key is not kept: nothing
    can sign another certificate the cluster trusts. `kwargs` go to `Security`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    # A day back: the nodes' clocks may be behind this machine's.
    not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=365)

    def name(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def key_usage(**usages):
        names = (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
        return x509.KeyUsage(**{usage: usages.get(usage, False) for usage in names})

    def certificate(subject, key, *extensions):
        # Key identifiers: what OpenSSL's strict verification (Python's default, which distributed turns
        # off) asks of a certificate, so that any TLS client can verify these. (noqa F821: ca_key is bound
        # below before any call, and deleted after the last one so that the key is not kept.)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # noqa: F821
                critical=False,
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()  # noqa: F821

    ca_key, ca_name = ec.generate_private_key(ec.SECP256R1()), name("jqref cluster CA")
    ca = certificate(
        ca_name,
        ca_key,
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (key_usage(key_cert_sign=True, crl_sign=True), True),
    )
    material = {}
    for role, common_name in ROLE_NAMES.items():
        key = ec.generate_private_key(ec.SECP256R1())
        # A client only connects; schedulers and workers also listen.
        purposes = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([] if role == "client" else [ExtendedKeyUsageOID.SERVER_AUTH])
        material[f"tls_{role}_cert"] = certificate(
            name(common_name),
            key,
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (key_usage(digital_signature=True), True),
            (x509.ExtendedKeyUsage(purposes), False),
        )
        material[f"tls_{role}_key"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    del ca_key
    return Security(require_encryption=True, tls_ca_file=ca, **material, **kwargs)


def has_roles(security: Security | None) -> bool:
    """Whether each role's certificate in `security` names that role, as
    `cluster_credentials()`' do: only then may its scheduler get the preload,
    which serves nobody whose certificate names no role (one certificate for
    all, as ``Security.temporary()`` gives, names none)."""
    if security is None:
        return False
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID
    except ImportError:  # then cluster_credentials() did not make it here
        return False
    for role, common_name in ROLE_NAMES.items():
        pem = getattr(security, f"tls_{role}_cert")
        if not pem:
            return False
        if "\n" not in pem:
            with open(pem) as f:
                pem = f.read()
        subject = x509.load_pem_x509_certificate(pem.encode()).subject
        if [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] != [common_name]:
            return False
    return True


# ---- the peer's role (where the scheduler runs) -----------------------------


def certificate_role(peercert: dict | None) -> str | None:
    """The role a certificate names (as ``SSLSocket.getpeercert()`` gives it), if any."""
    for rdn in (peercert or {}).get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName" and value in ROLE_NAMES.values():
                return value
    return None


def peer_role(comm) -> str | None:
    """The role of the certificate `comm`'s peer presented; None for a comm
    other than distributed's TLS one, whose reads are not guarded here."""
    if not isinstance(comm, TLS):
        return None
    return certificate_role(comm.extra_info.get("peercert"))


def _describe(role: str | None) -> str:
    return f"the certificate of role {role}" if role else "no certificate of this cluster's roles"


class PickleRefused(Exception):
    """A restricted peer sent an object to unpickle."""


# ---- hooks shared by the process ---------------------------------------------

_HOOKS = "_jqref_tls_roles_hooks"


class _Read(Protocol):
    """A comm's read method, as `TCP.read` is."""

    def __call__(self, comm: TCP, /, deserializers: Any = None) -> Coroutine[Any, Any, Any]: ...


class _ProcessHooks:
    """What every copy of this source in a process shares (the preload text
    runs anew for each scheduler): the SSL contexts of guarded schedulers,
    and the restricted peer a comm being read comes from, if any."""

    def __init__(self) -> None:
        self.contexts: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
        #: The restricted peer whose message is being read, as the refusal names it.
        self.reading: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            "jqref_tls_roles_reading", default=None
        )
        #: The role of the restricted peer whose stream is being served.
        self.stream_role: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            "jqref_tls_roles_stream", default=None
        )
        self.refuses_pickles = False

    def restricted_peer(self, comm) -> str | None:
        """Who `comm`'s peer is, if it is a guarded scheduler's comm with a peer that may not send pickles."""
        sock = getattr(getattr(comm, "stream", None), "socket", None)
        if sock is None or sock.context not in self.contexts:
            return None
        role = peer_role(comm)
        return None if role in UNRESTRICTED else f"{comm.peer_address} ({_describe(role)})"

    def guarded_read(self, read: _Read) -> _Read:
        hooks = self

        async def read_refusing_pickles(self: TCP, *args: Any, **kwargs: Any) -> Any:
            peer = hooks.restricted_peer(self)
            if peer is None:
                return await read(self, *args, **kwargs)
            if not hooks.refuses_pickles:
                self.abort()
                raise CommClosedError(
                    f"the scheduler cannot check what {peer} sends (see the error logged "
                    "when it started) and refuses it"
                )
            token = hooks.reading.set(peer)
            try:
                return await read(self, *args, **kwargs)
            except PickleRefused as e:
                logger.warning("%s; connection closed", e)
                self.abort()
                raise CommClosedError(str(e)) from None
            finally:
                hooks.reading.reset(token)

        read_refusing_pickles.__wrapped__ = read  # type: ignore[attr-defined]  # a function takes it; inspect reads it
        return read_refusing_pickles


class _PickleGate:
    """``distributed.protocol.core``'s ``pickle``: refuses to load while a restricted peer's message is read."""

    def __init__(self, module, hooks: _ProcessHooks):
        self._module, self._hooks = module, hooks

    def __getattr__(self, name):
        return getattr(self._module, name)

    def loads(self, *args, **kwargs):
        peer = self._hooks.reading.get()
        if peer is not None:
            raise PickleRefused(
                f"the scheduler refuses a pickled object from {peer}: workers send none, and "
                "the scheduler would run the code it names"
            )
        return self._module.loads(*args, **kwargs)


def _refuses_pickles(hooks: _ProcessHooks) -> bool:
    """Whether a message read for a restricted peer fails on a pickled object,
    with the distributed installed (the comm reads through ``protocol.loads``)."""
    frames = protocol_core.dumps({"x": ToPickle(0)})
    core_logger = logging.getLogger(protocol_core.__name__)  # which logs the refusal as critical

    def silence(record):
        return False

    core_logger.addFilter(silence)
    token = hooks.reading.set("self-test")
    try:
        distributed.protocol.loads(frames)
    except PickleRefused:
        return distributed.protocol.loads is protocol_core.loads
    finally:
        hooks.reading.reset(token)
        core_logger.removeFilter(silence)
    return False


def _process_hooks() -> _ProcessHooks:
    """The process's hooks, installed by the first copy of this source to run."""
    hooks = TLS.__dict__.get(_HOOKS)
    if hooks is not None:
        return hooks
    hooks = _ProcessHooks()
    # Replacing distributed's own: the gate passes everything to the module but loads; the read wraps TLS's.
    protocol_core.pickle = _PickleGate(protocol_core.pickle, hooks)  # type: ignore[assignment]  # a module's stand-in
    TLS.read = hooks.guarded_read(TLS.read)  # type: ignore[method-assign]  # wrapping it is the point
    setattr(TLS, _HOOKS, hooks)
    hooks.refuses_pickles = _refuses_pickles(hooks)
    if not hooks.refuses_pickles:
        logger.error(
            "jqref.tls_roles: this distributed (%s) unpickles a message other than through "
            "distributed.protocol.core.pickle, so a scheduler cannot refuse pickles from workers: "
            "every connection from a worker-certified peer is refused",
            distributed.__version__,
        )
    return hooks


# ---- one scheduler's handlers ------------------------------------------------


def _takes_comm(handler) -> bool:
    """As distributed's ``_expects_comm``: a first parameter named ``comm``."""
    try:
        parameters = inspect.signature(handler).parameters
    except (TypeError, ValueError):
        return False
    return next(iter(parameters), None) == "comm"


def _signature_with_comm(handler) -> inspect.Signature:
    """`handler`'s signature with ``comm`` first: distributed then passes the
    comm (``_expects_comm``) and the options the handler names (``has_keyword``)."""
    comm = inspect.Parameter("comm", inspect.Parameter.POSITIONAL_ONLY)
    try:
        signature = inspect.signature(handler)
        parameters = [p for p in signature.parameters.values() if p.name != "comm"]
        return signature.replace(parameters=[comm, *parameters])
    except (TypeError, ValueError):
        return inspect.Signature([comm, inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])


def _refuse(comm, op: str, role: str | None):
    """Tell the peer why, then drop its connection."""
    why = (
        f"the scheduler refuses {op!r} from {comm.peer_address}: it presented {_describe(role)}, "
        "which may send only what workers and nannies send. A client needs the cluster's client "
        "certificate (the cluster object's security)"
    )
    if op == "register-client":
        # What a task calling get_client() or worker_client() meets: its worker holds the workers' certificate.
        why += "; a task cannot start a client (get_client, worker_client), its worker has only the workers' one"
    logger.warning(why)

    reply: list[dict[str, str]] | ErrorMessage
    if op == "register-client":  # a Client reads its stream's first message, and raises its "error"
        reply = [{"op": "stream-start", "error": why}]
    else:  # an rpc raises this
        reply = error_message(PermissionError(why), status="uncaught-error")

    async def refused():
        try:
            await comm.write(reply)
        except (OSError, TypeError):
            pass
        comm.abort()
        return Status.dont_reply

    return refused()


def _guard(op: str, handler, hooks: _ProcessHooks):
    """`handler`, served to a peer according to its role."""
    takes_comm = _takes_comm(handler)

    def call(comm, msg):
        return handler(comm, **msg) if takes_comm else handler(**msg)

    async def with_stream_role(role, running):
        token = hooks.stream_role.set(role)
        try:
            return await running
        finally:
            hooks.stream_role.reset(token)

    def guarded(comm, /, **msg):
        role = peer_role(comm)
        if role in UNRESTRICTED:
            return call(comm, msg)
        if role is None or op not in _ALLOWED_OPS.get(role, ()):
            return _refuse(comm, op, role)
        # A stream it opens (register-worker) is served with the same role.
        token = hooks.stream_role.set(role)
        try:
            result = call(comm, msg)
        finally:
            hooks.stream_role.reset(token)
        return with_stream_role(role, result) if inspect.iscoroutine(result) else result

    guarded.__name__ = guarded.__qualname__ = getattr(handler, "__name__", op)
    guarded.__signature__ = _signature_with_comm(handler)  # type: ignore[attr-defined]  # inspect reads it
    return guarded


class _RoleHandlers(dict):
    """A scheduler's handlers, each served according to the role of the peer
    that asks: a handler added later (as jqref's detached session does) too."""

    def __init__(self, handlers, hooks: _ProcessHooks):
        super().__init__(handlers)
        self._hooks = hooks
        self._guards: dict = {}

    def __getitem__(self, op):
        handler = super().__getitem__(op)
        cached = self._guards.get(op)
        if cached is None or cached[0] is not handler:
            cached = self._guards[op] = (handler, _guard(op, handler, self._hooks))
        return cached[1]


class _RoleStreamHandlers(dict):
    """A scheduler's stream handlers: on a stream a restricted peer opened, only its role's."""

    def __init__(self, handlers, hooks: _ProcessHooks):
        super().__init__(handlers)
        self._hooks = hooks

    def __getitem__(self, op):
        role = self._hooks.stream_role.get()
        if role is not None and op not in _ALLOWED_STREAM_OPS.get(role, ()):
            why = (
                f"the scheduler refuses stream message {op!r} from a peer with {_describe(role)}, "
                "which may send only what workers send"
            )
            logger.warning("%s; stream closed", why)
            raise CommClosedError(why)
        return super().__getitem__(op)


def guard_scheduler(scheduler) -> None:
    """Serve `scheduler`'s peers according to their certificates' roles."""
    hooks = _process_hooks()
    contexts = [
        listener.server_args.get("ssl_options") for listener in scheduler.listeners if hasattr(listener, "server_args")
    ]
    contexts.append(scheduler.connection_args.get("ssl_context"))
    for context in contexts:
        if context is not None:
            hooks.contexts.add(context)
    for listener in scheduler.listeners:
        if not listener.contact_address.startswith("tls://"):
            logger.warning(
                "jqref.tls_roles: the scheduler listens at %s, not tls://: every request there is refused",
                listener.contact_address,
            )
    scheduler.handlers = _RoleHandlers(scheduler.handlers, hooks)
    scheduler.stream_handlers = _RoleStreamHandlers(scheduler.stream_handlers, hooks)


def dask_setup(server) -> None:
    """As a scheduler preload: guard it. It must be the first preload: the
    scheduler listens before it runs the preloads, and a connection read
    before this runs (only possible once the event loop ran, as an earlier
    preload that waits lets it) would not have been checked."""
    from distributed import Scheduler

    if not isinstance(server, Scheduler):
        logger.warning("jqref.tls_roles guards a scheduler, not a %s: nothing done", type(server).__name__)
        return
    setups = [getattr(preload.module, "dask_setup", None) for preload in server.preloads]
    if dask_setup in setups and any(setups[: setups.index(dask_setup)]):
        logger.warning(
            "jqref.tls_roles runs after another preload's dask_setup, during which the scheduler may "
            "have read connections unchecked: make jqref.tls_roles the first preload"
        )
    try:
        guard_scheduler(server)
    except Exception:
        # distributed would log this and run on, unguarded: serve nobody instead.
        logger.critical("jqref.tls_roles could not guard the scheduler, which now refuses every request", exc_info=True)
        server.handlers.clear()
        server.stream_handlers.clear()
        raise
