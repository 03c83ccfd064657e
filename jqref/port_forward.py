"""A local port forwarded over an SSH connection (`SSHRunner.forward`, like
``ssh -L``), so that this machine reaches the login node's side without
another login."""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable

import paramiko

logger = logging.getLogger(__name__)


class PortForward:
    """A local listening port whose connections are carried over the SSH
    connection to a host and port as the login node reaches them."""

    def __init__(self, transport: Callable[[], paramiko.Transport], remote_host: str, remote_port: int):
        """`transport` gives the connection's transport for each new
        connection: the connection may have been made again since."""
        self.transport = transport
        self.remote = (remote_host, remote_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.local_port = self._listener.getsockname()[1]
        self._open: set[tuple[socket.socket, paramiko.Channel]] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"jqref-forward-{self.local_port}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            # Each connection in a thread of its own: opening its channel may
            # first have to connect again, which must not hold up the others.
            threading.Thread(target=self._carry, args=(conn, peer), daemon=True).start()

    def _carry(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            channel = self.transport().open_channel("direct-tcpip", self.remote, peer)
        except Exception as e:  # the far end refused or the link is down: this connection fails, not the forward
            logger.warning("forwarding to %s:%d over SSH failed: %s", *self.remote, e)
            conn.close()
            return
        pair = (conn, channel)
        self._open.add(pair)
        ends: list[socket.socket | paramiko.Channel] = [conn, channel]
        try:
            while True:
                readable, _, _ = select.select(ends, [], [], 1.0)
                if conn in readable:
                    data = conn.recv(65536)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                if self._closed:
                    break
        except (OSError, EOFError, paramiko.SSHException) as e:
            logger.debug("forwarded connection to %s:%d ended: %s", *self.remote, e)
        finally:
            self._open.discard(pair)
            channel.close()
            conn.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone may not
        self._listener.close()
        for conn, channel in list(self._open):
            channel.close()
            conn.close()
