"""An sshd that closes connections before its banner, as OpenSSH does for an
address it penalises (PerSourcePenalties) or past MaxStartups: the error says
what the bare "Error reading SSH protocol banner" does not."""

import socket
import threading

import pytest

from jqref import SSHRunner


@pytest.fixture
def closing_port():
    """A port whose every connection is accepted, then closed at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_a_connection_closed_before_the_banner_names_the_likely_causes(closing_port, tmp_path):
    runner = SSHRunner(
        f"dask@127.0.0.1:{closing_port}",
        config_file=None,
        known_hosts=str(tmp_path / "known_hosts"),
        reconnect_attempts=1,
        connect_timeout=5,
    )
    with pytest.raises(ConnectionError) as refused:
        runner.run_blocking(["true"])
    message = str(refused.value)
    assert "Error reading SSH protocol banner" in message
    assert "PerSourcePenalties" in message and "MaxStartups" in message
