"""The port forward's pumping, with a plain socket standing in for the SSH channel."""

import ipaddress
import socket
import threading

import psutil

from jqref.port_forward import PortForward


class DirectTransport:
    """Opens "channels" as direct TCP connections: what sshd would do for direct-tcpip."""

    def open_channel(self, kind, destination, originator):
        assert kind == "direct-tcpip"
        return socket.create_connection(destination)


def echo_server():
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(
                target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")], daemon=True
            ).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_bytes_go_both_ways_on_concurrent_connections_and_close_ends_them():
    server = echo_server()
    forward = PortForward(DirectTransport, "127.0.0.1", server.getsockname()[1])
    clients = [socket.create_connection(("127.0.0.1", forward.local_port), timeout=10) for _ in range(3)]
    payload = bytes(range(256)) * 1000
    for i, client in enumerate(clients):
        client.sendall(payload[i:])
    for i, client in enumerate(clients):
        received = b""
        while len(received) < len(payload) - i:
            received += client.recv(65536)
        assert received == payload[i:]
    forward.close()
    for client in clients:
        assert client.recv(1) == b"", "closing the forward closes its connections"
    server.close()


def listening_addresses(port):
    """The addresses this process listens on at `port`, as the operating system reports them."""
    return {
        connection.laddr.ip
        for connection in psutil.Process().net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    }


def test_the_forwarded_port_listens_on_loopback_only():
    """Anyone who reaches the port reaches the login node's side as this user: not other hosts."""
    forward = PortForward(DirectTransport, "127.0.0.1", 9)
    try:
        addresses = listening_addresses(forward.local_port)
        assert addresses, "nothing listens on the forwarded port"
        assert all(ipaddress.ip_address(address).is_loopback for address in addresses), addresses
    finally:
        forward.close()
    assert listening_addresses(forward.local_port) == set(), "closing the forward stops the listening"
