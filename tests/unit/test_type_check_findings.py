"""Bugs the type checker (make typecheck) found, each pinned by the behaviour it broke."""

from __future__ import annotations

import base64
import numbers
from fractions import Fraction

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jqref import SSHRunner, ssh
from jqref.known_hosts import ChangedHostKey, check, parse
from jqref.option_checks import ByteSize, Duration, InvalidOptionError
from jqref.option_checks import check as check_option


class Integral:
    """A number registered as an integer that is no int, as numpy's int64 is."""

    def __init__(self, value: int):
        self.value = value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value


numbers.Integral.register(Integral)  # as numpy registers its integer types


def test_a_size_given_as_another_kind_of_number_is_read_as_that_number():
    # dask's parse_bytes reads anything but an int or float as text: it raised AttributeError.
    assert ByteSize()(Integral(2**30)) == 2**30
    assert ByteSize()(Fraction(2**31, 2)) == 2**30


def test_a_size_that_is_no_number_is_refused_with_the_option_named():
    with pytest.raises(InvalidOptionError, match="memory"):
        check_option("memory", object(), ByteSize())


def test_a_duration_given_as_a_fraction_is_read_as_its_value():
    # dask's parse_timedelta read it as the text "3/2" and jqref refused it as "not a duration".
    assert Duration()(Fraction(3, 2)) == 1.5
    assert Duration()(Integral(30)) == 30


def test_a_changed_key_listed_with_a_type_paramiko_cannot_load_is_still_an_expected_key():
    # ChangedHostKey is a paramiko.BadHostKeyException, whose expected_key was None here: its
    # __str__, and any caller reading expected_key as paramiko documents it, failed on None.
    listed = "login.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t\n"
    offered = ed25519.Ed25519PrivateKey.generate().public_key()
    blob = base64.b64decode(offered.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).split()[1])
    with pytest.raises(ChangedHostKey) as refused:
        check(parse(listed, "/home/u/.ssh/known_hosts"), "login.example", 22, paramiko.Ed25519Key(data=blob))
    expected = refused.value.expected_key
    assert expected.get_name() == "sk-ssh-ed25519@openssh.com"
    assert expected.get_base64() == "AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t"
    assert "expected 'AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t'" in paramiko.BadHostKeyException.__str__(refused.value)


def test_no_reconnect_attempts_is_refused_when_the_runner_is_made():
    # With 0 the reconnect loop never ran and its error message read an unbound variable.
    with pytest.raises(ValueError, match="reconnect_attempts"):
        SSHRunner("host.example", config_file=None, reconnect_attempts=0)


def test_a_login_node_that_cannot_be_reached_is_reported_without_a_last_pointless_wait(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(ssh.time, "sleep", sleeps.append)
    runner = SSHRunner("host.example", config_file=None, reconnect_attempts=3)

    def refused() -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(runner, "_open", refused)
    with pytest.raises(ConnectionError, match=r"cannot reach host\.example over SSH: connection refused"):
        runner._transport()
    assert sleeps == [1, 2]  # between the three attempts; it used to wait 4 s more after the last
