"""A login that needs the key and then a one-time password, against a real
SSH server (paramiko's, in a thread) that accepts the key only partially and
then asks through keyboard-interactive, as sshd with PAM does at such sites.
The testbed's own sshd with libpam-oath is the integration test."""

from __future__ import annotations

import socket
import threading

import paramiko
import pytest

from jqref import SSHRunner
from jqref.ssh_prompts import PromptsUnanswered

CODE = "492039"
PROMPT = "One-time password (OATH) for `dask': "


class KeyThenCode(paramiko.ServerInterface):
    """Key first (partial success), then one prompt whose answer must be CODE."""

    def __init__(self, client_key: paramiko.PKey):
        self.client_key = client_key
        self.key_accepted = False

    def get_allowed_auths(self, username):
        return "keyboard-interactive" if self.key_accepted else "publickey"

    def check_auth_publickey(self, username, key):
        if key == self.client_key:
            self.key_accepted = True
            return paramiko.AUTH_PARTIALLY_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_interactive(self, username, submethods):
        if not self.key_accepted:
            return paramiko.AUTH_FAILED
        return paramiko.InteractiveQuery("", "", (PROMPT, False))

    def check_auth_interactive_response(self, responses):
        return paramiko.AUTH_SUCCESSFUL if list(responses) == [CODE] else paramiko.AUTH_FAILED


class Server:
    """Accepts logins on a loopback port until closed; counts connections."""

    def __init__(self, host_key: paramiko.PKey, client_key: paramiko.PKey):
        self.host_key, self.client_key = host_key, client_key
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            transport.start_server(server=KeyThenCode(self.client_key))
            self.transports.append(transport)

    def close(self):
        self.listener.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture(scope="module")
def keys():
    return paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()


@pytest.fixture
def server(keys):
    server = Server(*keys)
    yield server
    server.close()


@pytest.fixture
def make_runner(server, keys, tmp_path):
    host_key, client_key = keys
    identity = tmp_path / "id_ecdsa"
    client_key.write_private_key_file(str(identity))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {host_key.get_name()} {host_key.get_base64()}\n")

    def make(answer_prompts=None) -> SSHRunner:
        return SSHRunner(
            f"dask@127.0.0.1:{server.port}",
            config_file=None,
            known_hosts=str(known_hosts),
            identity_file=str(identity),
            answer_prompts=answer_prompts,
            reconnect_attempts=1,
            connect_timeout=10,
        )

    return make


def test_the_code_is_asked_once_per_connection_and_again_on_reconnect(make_runner):
    asked = []

    def answer(title, instructions, prompts):
        asked.append(list(prompts))
        return [CODE]

    runner = make_runner(answer)
    transport = runner._transport()
    assert transport.is_authenticated()
    assert asked == [[(PROMPT, False)]]
    assert runner._transport() is transport and len(asked) == 1  # the session keeps its connection

    transport.close()
    assert runner._transport().is_authenticated()
    assert len(asked) == 2  # a new connection asks again
    runner._drop()


def test_a_wrong_code_is_refused_without_retrying(make_runner):
    asked = []
    runner = make_runner(lambda title, instructions, prompts: asked.append(1) or ["000000"])
    with pytest.raises(paramiko.AuthenticationException):
        runner._transport()
    assert asked == [1]


def test_an_error_in_the_callable_reaches_the_caller(make_runner):
    def answer(title, instructions, prompts):
        raise KeyError("no token device")

    with pytest.raises(KeyError, match="no token device"):
        make_runner(answer)._transport()


def test_a_wrong_number_of_answers_is_named(make_runner):
    with pytest.raises(PromptsUnanswered, match=r"gave 2 answer\(s\) to dask@127.0.0.1's 1 prompt"):
        make_runner(lambda title, instructions, prompts: [CODE, CODE])._transport()


def test_without_a_terminal_the_default_refuses_at_once_naming_the_prompt_and_the_fix(make_runner, monkeypatch):
    monkeypatch.setattr("jqref.ssh_prompts._has_terminal", lambda: False)
    with pytest.raises(PromptsUnanswered, match=r"asks .One-time password.*no terminal.*answer_prompts="):
        make_runner()._transport()
