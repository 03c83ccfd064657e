"""Start every TLS operation of this process with an empty OpenSSL error queue.

OpenSSL keeps one error queue per thread, and ``SSL_get_error()`` looks at it
*before* it looks at the connection: an entry left there by any unrelated
OpenSSL call on the same thread turns "no data yet" (``SSLWantReadError``) on
a healthy connection into a fatal ``SSLError``/``OSError``. CPython's ``_ssl``
(3.12 and 3.13 at least, with OpenSSL 3) does not empty the queue before
``SSL_read_ex``/``SSL_write_ex``/``SSL_do_handshake``/``SSL_shutdown``
(CPython gh-148594), so an asyncio or tornado event loop serving many TLS
connections on one thread can see one bad entry drop a connection that had
nothing wrong with it. With Debian trixie's Python 3.13.5 and OpenSSL 3.5,
``_ssl`` leaves such an entry itself whenever a read finds its peer gone
without a TLS close (it raises OSError and keeps the queue), which is how
every distributed connection closes: one closed connection, and the next idle
read of the thread fails.

``apply()`` wraps the Python-level methods of ``ssl.SSLSocket`` (tornado, so
distributed's TCP comm) and ``ssl.SSLObject`` (asyncio) that reach those
calls, so that each first calls libcrypto's ``ERR_clear_error()``, resolved in
the very library ``_ssl`` uses. It is idempotent and costs one ctypes call per
operation.

Workers and a scheduler started elsewhere do not have jqref installed, so this
module is stdlib-only and its own source text doubles as a distributed
preload, which applies the fix as it runs (`jqref.preload` ships it to the
nanny and workers of TLS jobs and to a scheduler on the login node).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import ssl

logger = logging.getLogger("jqref.ssl_error_queue")

# Methods whose body calls the C object's read/write/do_handshake/shutdown
# directly (Lib/ssl.py, 3.12-3.14). The others go through these:
# SSLSocket.recv/recv_into -> read, sendall/sendfile -> send.
WRAPPED_METHODS = {
    ssl.SSLSocket: ("read", "write", "send", "do_handshake", "unwrap"),
    ssl.SSLObject: ("read", "write", "do_handshake", "unwrap"),
}
_MARK = "_clears_openssl_error_queue"


def _mapped_files() -> dict[str, list[tuple[int, int]]]:
    """File-backed mappings of this process, by path (empty if /proc is absent)."""
    mappings: dict[str, list[tuple[int, int]]] = {}
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    mappings.setdefault(fields[5].rstrip("\n"), []).append((start, end))
    except OSError:
        pass
    return mappings


def file_containing(address: int) -> str | None:
    """Path of the mapped file that holds `address`, if /proc tells."""
    for path, ranges in _mapped_files().items():
        if any(start <= address < end for start, end in ranges):
            return path
    return None


def _symbol(library: ctypes.CDLL, name: str):
    try:
        return getattr(library, name)
    except AttributeError:
        return None


def find_err_clear_error():
    """libcrypto's ERR_clear_error as used by ``_ssl``, or None.

    Looked up through ``_ssl``'s own handle (dlsym searches a library and its
    dependencies, so this is the libcrypto ``_ssl`` was linked with). When
    ``_ssl`` is built into the interpreter: the program's handle, then
    ``find_library("crypto")`` if that library is already loaded. An extension
    ``_ssl`` without the symbol has OpenSSL inside it, hidden: no other
    libcrypto shares its queue, so there is nothing to clear from here.
    """
    import _ssl

    module_file = getattr(_ssl, "__file__", None)
    if module_file:
        function = _symbol(ctypes.CDLL(module_file), "ERR_clear_error")
    else:
        function = _symbol(ctypes.CDLL(None), "ERR_clear_error")
    if function is None and module_file is None:
        name = ctypes.util.find_library("crypto")
        loaded = [path for path in _mapped_files() if name and os.path.basename(path) == name]
        if len(loaded) == 1:
            function = _symbol(ctypes.CDLL(loaded[0]), "ERR_clear_error")
    if function is None:
        logger.debug(
            "no ERR_clear_error reachable from %s (OpenSSL linked statically?)", module_file or "the interpreter"
        )
        return None
    function.argtypes, function.restype = (), None
    address = ctypes.cast(function, ctypes.c_void_p).value  # None only for a null pointer
    library = file_containing(address) if address is not None else None
    logger.debug("ERR_clear_error from %s", library or "?")
    return function


def _clearing(method, clear):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        clear()
        return method(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper


def is_applied() -> bool:
    return all(getattr(getattr(cls, name), _MARK, False) for cls, names in WRAPPED_METHODS.items() for name in names)


def apply() -> bool:
    """Make TLS operations in this process clear the error queue first.

    Returns whether they do (False if libcrypto's ERR_clear_error cannot be
    reached). Applying again, from another copy of this source included,
    changes nothing.
    """
    if is_applied():
        return True
    clear = find_err_clear_error()
    if clear is None:
        return False
    for cls, names in WRAPPED_METHODS.items():
        for name in names:
            method = getattr(cls, name)
            if not getattr(method, _MARK, False):
                setattr(cls, name, _clearing(method, clear))
    return True


def remove() -> None:
    """Undo `apply()` (for tests)."""
    for cls, names in WRAPPED_METHODS.items():
        for name in names:
            method = getattr(cls, name)  # as apply() found it, or its wrapper
            while getattr(method, _MARK, False):
                method = method.__wrapped__
            setattr(cls, name, method)


def preload_source() -> str:
    """This module's source: the text of a distributed preload (distributed
    runs a preload that contains a space as module source; no dask_setup is
    needed, the source applies the fix as it runs)."""
    with open(__file__, encoding="utf-8") as source:
        return source.read()


if __name__ != "jqref.ssl_error_queue":  # run as source text: a preload
    apply()
