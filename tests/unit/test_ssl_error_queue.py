"""A stale OpenSSL error on the thread breaks healthy TLS reads; the fix clears it.

The stale entry is pushed with a failing libcrypto call made through the very
library ``_ssl`` uses, after the handshake (the handshake clears the queue
itself), and the read finds no data: the honest answer is SSLWantReadError.
"""

import _ssl
import asyncio
import ctypes
import os
import select
import socket
import ssl
import time

import pytest
from distributed.preloading import _import_module, process_preloads
from distributed.security import Security

from jqref import ssl_error_queue

LIBCRYPTO = ctypes.CDLL(_ssl.__file__)  # dlsym searches _ssl's dependencies
LIBCRYPTO.ERR_peek_error.restype = ctypes.c_ulong
LIBCRYPTO.BIO_new_file.restype = ctypes.c_void_p
LIBCRYPTO.BIO_new_file.argtypes = (ctypes.c_char_p, ctypes.c_char_p)


def leave_stale_error():
    """Fail an unrelated OpenSSL call on this thread, as other code may."""
    assert LIBCRYPTO.BIO_new_file(b"/nonexistent/jqref", b"r") is None
    assert LIBCRYPTO.ERR_peek_error() != 0


@pytest.fixture(autouse=True)
def unpatched_ssl():
    ssl_error_queue.remove()
    yield
    ssl_error_queue.remove()
    LIBCRYPTO.ERR_clear_error()


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    security = Security.temporary()
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_text(security.tls_scheduler_cert)
    (folder / "key.pem").write_text(security.tls_scheduler_key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    return server, client


def idle(endpoint, attempts=3):
    """Read until there is nothing left (session tickets included): the
    connection is then healthy and idle."""
    for _ in range(attempts):
        try:
            endpoint.recv(1024) if isinstance(endpoint, ssl.SSLSocket) else endpoint.read(1024)
        except ssl.SSLWantReadError:
            pass


def memory_pair(contexts):
    """Client-side SSLObject (what asyncio uses) of a finished in-memory handshake."""
    server_ctx, client_ctx = contexts
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(to_server, from_server, server_side=True)
    client = client_ctx.wrap_bio(to_client, from_client)
    for _ in range(5):
        for endpoint in (client, server):
            try:
                endpoint.do_handshake()
            except ssl.SSLWantReadError:
                pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
    idle(client)
    return client


def socket_pair(contexts):
    """Client-side non-blocking SSLSocket (what tornado, so distributed, uses)."""
    server_ctx, client_ctx = contexts
    left, right = socket.socketpair()
    server = server_ctx.wrap_socket(left, server_side=True, do_handshake_on_connect=False)
    client = client_ctx.wrap_socket(right, do_handshake_on_connect=False)
    server.setblocking(False)
    client.setblocking(False)
    pending = [server, client]
    for _ in range(50):
        for endpoint in list(pending):
            try:
                endpoint.do_handshake()
                pending.remove(endpoint)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
    assert not pending
    idle(server)
    idle(client)
    return client, server


@pytest.fixture(params=["SSLObject", "SSLSocket"])
def idle_client(request, contexts):
    if request.param == "SSLObject":
        yield memory_pair(contexts)
    else:
        client, server = socket_pair(contexts)
        yield client
        client.close()
        server.close()


def read(endpoint):
    return endpoint.recv(1024) if isinstance(endpoint, ssl.SSLSocket) else endpoint.read(1024)


def test_unpatched_ssl_misreports_an_idle_connection(idle_client):
    """The bug itself (CPython gh-148594): the read fails for good."""
    leave_stale_error()
    with pytest.raises(ssl.SSLError) as raised:
        read(idle_client)
    if isinstance(raised.value, ssl.SSLWantReadError):
        pytest.skip("this Python clears the OpenSSL error queue itself")


def test_with_the_fix_an_idle_connection_just_wants_to_read(idle_client):
    assert ssl_error_queue.apply()
    leave_stale_error()
    with pytest.raises(ssl.SSLWantReadError):
        read(idle_client)


def test_with_the_fix_a_peer_gone_on_one_connection_leaves_the_others_alone(contexts):
    """What breaks distributed on the trixie testbeds (Python 3.13.5, OpenSSL
    3.5): the failed read of a connection whose peer went away leaves its
    error on the queue, and an idle healthy connection served next by the
    same thread fails too (BrokenPipeError there). A Python that leaves no
    error there gets one left in its place, so the fix is checked everywhere."""
    assert ssl_error_queue.apply()
    (gone, gone_peer), (healthy, healthy_peer) = socket_pair(contexts), socket_pair(contexts)
    with gone, healthy, healthy_peer:
        gone_peer.close()
        select.select([gone], [], [], 5)
        try:
            gone.recv(1024)  # b"" here; OSError on trixie
        except OSError:
            pass
        if LIBCRYPTO.ERR_peek_error() == 0:
            leave_stale_error()
        with pytest.raises(ssl.SSLWantReadError):
            healthy.recv(1024)


@pytest.mark.parametrize("method", ["send", "write"])
def test_with_the_fix_a_write_that_must_wait_just_wants_to_write(contexts, method):
    """SSLSocket.send (under sendall) and write, once the peer's buffers are full."""
    assert ssl_error_queue.apply()
    client, server = socket_pair(contexts)
    with client, server, pytest.raises(ssl.SSLWantWriteError):
        for _ in range(1000):  # the socket buffers hold far less than 1000 * 64 KiB
            leave_stale_error()
            getattr(client, method)(bytes(65536))


def test_with_the_fix_a_close_waiting_for_the_peer_just_wants_to_read(idle_client):
    """unwrap() has sent its close_notify and waits for the peer's."""
    assert ssl_error_queue.apply()
    leave_stale_error()
    with pytest.raises(ssl.SSLWantReadError):
        idle_client.unwrap()


def test_with_the_fix_a_transfer_that_has_to_wait_arrives_whole(contexts):
    """A stale error before every send and read of a transfer larger than the
    socket buffers, so that the sender waits for room and the reader for
    data: the bytes arrive all, in order."""
    assert ssl_error_queue.apply()
    client, server = socket_pair(contexts)
    payload = bytes(range(256)) * 4096  # 1 MiB
    sent, received, waits = 0, bytearray(), set()
    deadline = time.monotonic() + 10
    with client, server:
        while len(received) < len(payload):
            assert time.monotonic() < deadline, f"{len(received)} of {len(payload)} bytes arrived"
            leave_stale_error()
            try:
                received += server.recv(65536)
            except ssl.SSLWantReadError:
                waits.add("read")
            if sent < len(payload):
                leave_stale_error()
                try:
                    sent += client.send(payload[sent : sent + 65536])
                except ssl.SSLWantWriteError:  # the reader makes room on its next turn
                    waits.add("write")
    assert received == payload
    assert waits == {"read", "write"}, "the transfer never had to wait: it checked nothing"


def test_apply_is_idempotent_and_remove_undoes_it():
    original = ssl.SSLObject.read
    assert ssl_error_queue.apply() and ssl_error_queue.apply()
    assert ssl.SSLObject.read.__wrapped__ is original
    ssl_error_queue.remove()
    assert ssl.SSLObject.read is original and not ssl_error_queue.is_applied()


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_clears_the_queue_of_the_libcrypto_ssl_uses():
    function = ssl_error_queue.find_err_clear_error()
    path = ssl_error_queue.file_containing(ctypes.cast(function, ctypes.c_void_p).value)
    same = ssl_error_queue.file_containing(ctypes.cast(LIBCRYPTO.ERR_peek_error, ctypes.c_void_p).value)
    assert path == same and os.path.basename(path).startswith("libcrypto")
    leave_stale_error()
    function()
    assert LIBCRYPTO.ERR_peek_error() == 0


def test_source_text_works_as_a_distributed_preload_twice():
    """Nanny and worker preloads in one process (nanny=False) run it twice;
    distributed's import of a source text runs it twice more (import + reload)."""
    source = ssl_error_queue.preload_source()
    first, second = _import_module(source), _import_module(source)
    assert first is not second and ssl_error_queue.is_applied()
    assert not getattr(ssl.SSLSocket.read.__wrapped__, "_clears_openssl_error_queue", False)


def test_source_text_run_by_an_exec_preload_applies_too():
    """As jqref.preload ships modules: one exec() expression around the source."""
    _import_module(f"exec(compile({ssl_error_queue.preload_source()!r}, 'jqref/ssl_error_queue.py', 'exec'))")
    assert ssl_error_queue.is_applied()


def test_importing_the_module_applies_nothing():
    import importlib

    importlib.reload(ssl_error_queue)
    assert not ssl_error_queue.is_applied()


def test_a_preload_without_dask_setup_starts_cleanly():
    manager = process_preloads(object(), [ssl_error_queue.preload_source()], [])
    asyncio.run(manager.start())
    assert ssl_error_queue.is_applied()
