"""known_hosts as OpenSSH reads and writes it (jqref.known_hosts): host
patterns, hashed names, @cert-authority and @revoked lines, unreadable lines,
and trust-on-first-use appending. Every key and certificate is made here."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import stat
import subprocess
import time

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    SSHCertificateBuilder,
    SSHCertificateType,
)

from jqref import SSHRunner
from jqref.known_hosts import (
    ChangedHostKey,
    InvalidHostCertificate,
    KnownHostsPolicy,
    RevokedHostKey,
    UnknownHostKey,
    append,
    check,
    hash_name,
    host_name,
    match_hosts,
    parse,
    preferred_algorithms,
)

NOW = time.time()
HOUR = 3600


def ed25519_key():
    return ed25519.Ed25519PrivateKey.generate()


def line_of(public_key) -> str:
    """'type base64' of a cryptography public key or certificate."""
    return public_key.public_bytes(
        *(() if hasattr(public_key, "signature_key") else (Encoding.OpenSSH, PublicFormat.OpenSSH))
    ).decode()


def pkey(public_key) -> paramiko.PKey:
    """The paramiko key a server would present: plain, or carrying its certificate."""
    key_type, data = line_of(public_key).split()[:2]
    blob = base64.b64decode(data)
    cls = (
        paramiko.Ed25519Key if "ed25519" in key_type else paramiko.ECDSAKey if "ecdsa" in key_type else paramiko.RSAKey
    )
    return cls(data=blob)


def certify(
    host_private,
    ca_private,
    *,
    principals=("login.example",),
    kind=SSHCertificateType.HOST,
    after=NOW - HOUR,
    before=NOW + HOUR,
    critical=None,
):
    builder = (
        SSHCertificateBuilder()
        .public_key(host_private.public_key())
        .serial(7)
        .type(kind)
        .key_id(b"test host")
        .valid_after(int(after))
        .valid_before(int(before))
    )
    builder = (
        builder.valid_principals([p.encode() for p in principals]) if principals else builder.valid_for_all_principals()
    )
    if critical:
        builder = builder.add_critical_option(critical.encode(), b"")
    return builder.sign(ca_private)


@pytest.fixture
def host():
    return ed25519_key()


@pytest.fixture
def ca():
    return ed25519_key()


def entries_of(text: str, path: str = "/kh"):
    return parse(text, path)


# ---- patterns and names ----------------------------------------------------


@pytest.mark.parametrize(
    "hosts, name, expected",
    [
        ("login.example", "login.example", True),
        ("LOGIN.Example", "login.EXAMPLE", True),  # no regard to case
        ("other,login.example", "login.example", True),
        ("*.example", "login.example", True),
        ("*.example", "example", False),
        ("login?.example", "login1.example", True),
        ("login?.example", "login12.example", False),
        ("*.example,!bad.example", "bad.example", False),  # a negated match wins
        ("!bad.example,*.example", "bad.example", False),
        ("!bad.example", "login.example", False),  # negation alone matches nothing
        ("10.0.0.*", "10.0.0.7", True),
        ("[login.example]:2222", "[login.example]:2222", True),
        ("login.example", "[login.example]:2222", False),  # off port 22, only [host]:port
        ("[login.example]:*", "[login.example]:2222", True),
        ("[login.example]:2222", "login.example", False),
        ("log[in].example", "login.example", False),  # no character classes, as OpenSSH
        ("log.n.example", "login.example", False),  # '.' is a dot, not any character
    ],
)
def test_host_patterns_match_as_openssh_matches_them(hosts, name, expected):
    assert match_hosts(hosts, name) is expected


def test_host_name_brackets_ports_other_than_22():
    assert host_name("login", 22) == "login"
    assert host_name("login", 2222) == "[login]:2222"


def test_hashed_names_match_only_their_name():
    hashed = hash_name("login.example")
    assert hashed.startswith("|1|") and "login" not in hashed
    assert match_hosts(hashed, "login.example")
    assert match_hosts(hashed, "Login.Example")
    assert not match_hosts(hashed, "login2.example")
    assert hash_name("login.example") != hashed  # a new salt each time
    assert match_hosts(hash_name("[login]:2222"), "[login]:2222")
    assert not match_hosts(hash_name("[login]:2222"), "login")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_hashed_names_are_those_of_openssh(host, tmp_path):
    # What ssh-keygen -H hashes, read here; what is appended here, found by ssh-keygen -F.
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.write_text(f"login.example,[login.example]:2222 {line_of(host.public_key())}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(theirs)], check=True, capture_output=True)
    hashed = parse(theirs.read_text(), str(theirs))
    assert len(hashed) == 2 and all(e.hosts.startswith("|1|") for e in hashed)
    for name, port in (("login.example", 22), ("login.example", 2222)):
        assert check(hashed, name, port, pkey(host.public_key())) is not None
    append(str(ours), "[login.example]:2222", pkey(host.public_key()), hashed=True)
    found = subprocess.run(
        ["ssh-keygen", "-F", "[login.example]:2222", "-f", str(ours)], capture_output=True, text=True
    )
    assert found.returncode == 0 and line_of(host.public_key()) in found.stdout


# ---- reading ------------------------------------------------------------------


def test_lines_that_cannot_be_read_are_skipped_and_the_rest_kept(host, ca):
    key = line_of(host.public_key())
    text = "\n".join(
        [
            "# a comment",
            "",
            "   ",
            f"login.example {key} a trailing comment",  # 4
            "@unknown-marker login.example " + key,  # unknown marker
            "login.example ssh-ed25519 !!!not-base64!!!",  # broken base64
            "login.example ssh-rsa " + key.split()[1],  # the blob is not of the type the line says
            "login.example",  # too few fields
            "|1|broken login ssh-ed25519 " + key.split()[1],  # a hashed name that is not |1|salt|hash
            "old.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t",  # 10: unknown type
            f"@cert-authority *.example {line_of(ca.public_key())}",  # 11
            f"\t@revoked\t*\t{key}",  # 12, tabs
        ]
    )
    entries = entries_of(text, "/home/u/.ssh/known_hosts")
    assert [(e.line, e.marker, e.key_type) for e in entries] == [
        (4, "", "ssh-ed25519"),
        (10, "", "sk-ssh-ed25519@openssh.com"),
        (11, "@cert-authority", "ssh-ed25519"),
        (12, "@revoked", "ssh-ed25519"),
    ]
    assert entries[0].where == "/home/u/.ssh/known_hosts:4"


# ---- checking plain keys ----------------------------------------------------------


def test_a_listed_key_is_accepted_and_an_unlisted_host_is_unknown(host):
    entries = entries_of(f"*.example,!bad.example {line_of(host.public_key())}\n")
    assert check(entries, "login.example", 22, pkey(host.public_key())).line == 1
    assert check(entries, "bad.example", 22, pkey(host.public_key())) is None
    assert check(entries, "login.example", 2222, pkey(host.public_key())) is None


def test_hashed_entries_are_read(host):
    entries = entries_of(f"{hash_name('[login.example]:2222')} {line_of(host.public_key())}\n")
    assert check(entries, "login.example", 2222, pkey(host.public_key())) is not None


def test_a_key_of_a_type_paramiko_cannot_read_does_not_stop_the_others(host):
    text = (
        "login.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t\n"
        f"login.example {line_of(host.public_key())}\n"
    )
    assert check(entries_of(text), "login.example", 22, pkey(host.public_key())).line == 2


def test_a_changed_key_is_refused_naming_the_file_line_and_fix(host):
    old = ed25519_key()
    entries = entries_of(f"# header\nlogin.example {line_of(old.public_key())}\n", "/home/u/.ssh/known_hosts")
    with pytest.raises(ChangedHostKey) as refused:
        check(entries, "login.example", 22, pkey(host.public_key()))
    message = str(refused.value)
    assert "login.example" in message and "/home/u/.ssh/known_hosts:2" in message
    assert "ssh-keygen -f /home/u/.ssh/known_hosts -R login.example" in message
    assert isinstance(refused.value, paramiko.BadHostKeyException)  # what callers of paramiko catch
    assert refused.value.expected_key == pkey(old.public_key())


def test_a_revoked_key_is_refused_even_where_it_is_also_listed(host):
    key = line_of(host.public_key())
    entries = entries_of(f"login.example {key}\n@revoked * {key}\n", "/etc/ssh/ssh_known_hosts")
    with pytest.raises(RevokedHostKey, match=r"login\.example.*revoked at /etc/ssh/ssh_known_hosts:2"):
        check(entries, "login.example", 22, pkey(host.public_key()))


def test_revoked_applies_to_the_hosts_of_its_line(host):
    key = line_of(host.public_key())
    entries = entries_of(f"*.example {key}\n@revoked old.example {key}\n")
    assert check(entries, "login.example", 22, pkey(host.public_key())) is not None
    with pytest.raises(RevokedHostKey):
        check(entries, "old.example", 22, pkey(host.public_key()))


# ---- checking host certificates ------------------------------------------------------


def test_a_certificate_from_a_ca_listed_for_the_host_is_accepted(host, ca):
    entries = entries_of(f"# site CA\n@cert-authority *.example,!bad.example {line_of(ca.public_key())}\n")
    cert = pkey(certify(host, ca))
    assert check(entries, "login.example", 22, cert, NOW).marker == "@cert-authority"
    assert check(entries, "LOGIN.example", 22, cert, NOW) is not None


def test_a_certificate_from_a_ca_listed_for_other_hosts_falls_back_to_the_plain_key(host, ca):
    cert = pkey(certify(host, ca, principals=("bad.example",)))
    only_ca = entries_of(f"@cert-authority *.example,!bad.example {line_of(ca.public_key())}\n")
    assert check(only_ca, "bad.example", 22, cert, NOW) is None  # unknown
    with_key = entries_of(
        f"@cert-authority *.example,!bad.example {line_of(ca.public_key())}\nbad.example {line_of(host.public_key())}\n"
    )
    assert check(with_key, "bad.example", 22, cert, NOW).line == 2


def test_a_certificate_from_an_unlisted_ca_falls_back_to_the_plain_key(host, ca):
    entries = entries_of(f"@cert-authority * {line_of(ed25519_key().public_key())}\n")
    assert check(entries, "login.example", 22, pkey(certify(host, ca)), NOW) is None


@pytest.mark.parametrize(
    "problem, options",
    [
        ("not for login.example", {"principals": ("other.example",)}),
        ("expired", {"after": NOW - 2 * HOUR, "before": NOW - HOUR}),
        ("not valid before", {"after": NOW + HOUR, "before": NOW + 2 * HOUR}),
        ("user certificate", {"kind": SSHCertificateType.USER}),
        ("critical options", {"critical": "force-command"}),
    ],
)
def test_a_certificate_openssh_would_refuse_is_refused(host, ca, problem, options):
    entries = entries_of(f"@cert-authority * {line_of(ca.public_key())}\n", "/kh")
    with pytest.raises(InvalidHostCertificate, match=rf"login\.example.*{problem}.*/kh:1"):
        check(entries, "login.example", 22, pkey(certify(host, ca, **options)), NOW)


def test_a_certificate_without_principals_is_for_any_host(host, ca):
    entries = entries_of(f"@cert-authority * {line_of(ca.public_key())}\n")
    assert check(entries, "anything.example", 22, pkey(certify(host, ca, principals=())), NOW) is not None


def test_a_certificate_whose_signature_does_not_verify_is_refused(host, ca):
    cert = certify(host, ca)
    key = pkey(cert)
    blob = bytearray(key.public_blob.key_blob)
    blob[-1] ^= 1  # the last byte of the CA's signature
    forged = paramiko.Ed25519Key(data=bytes(blob))
    entries = entries_of(f"@cert-authority * {line_of(ca.public_key())}\n")
    with pytest.raises(InvalidHostCertificate, match="signature does not verify"):
        check(entries, "login.example", 22, forged, NOW)


def test_a_certificate_by_a_revoked_ca_or_for_a_revoked_key_is_refused(host, ca):
    cert = pkey(certify(host, ca))
    ca_line = f"@cert-authority * {line_of(ca.public_key())}\n"
    with pytest.raises(RevokedHostKey, match="CA that signed"):
        check(entries_of(ca_line + f"@revoked * {line_of(ca.public_key())}\n"), "login.example", 22, cert, NOW)
    with pytest.raises(RevokedHostKey, match=r"host key of login\.example.*:2"):
        check(entries_of(ca_line + f"@revoked * {line_of(host.public_key())}\n"), "login.example", 22, cert, NOW)


@pytest.mark.parametrize(
    "make_host, make_ca",
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), lambda: rsa.generate_private_key(65537, 2048)),
        (lambda: rsa.generate_private_key(65537, 2048), lambda: ec.generate_private_key(ec.SECP384R1())),
    ],
    ids=["ecdsa-host-rsa-ca", "rsa-host-ecdsa-ca"],
)
def test_other_key_types_for_hosts_and_cas(make_host, make_ca):
    host, ca = make_host(), make_ca()
    entries = entries_of(f"@cert-authority * {line_of(ca.public_key())}\n")
    assert check(entries, "login.example", 22, pkey(certify(host, ca)), NOW) is not None
    assert (
        check(entries_of(f"login.example {line_of(host.public_key())}\n"), "login.example", 22, pkey(host.public_key()))
        is not None
    )


# ---- which host key to ask the server for -------------------------------------------------


OFFERED = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
)


def test_certificates_are_asked_for_first_where_a_ca_is_listed(ca):
    entries = entries_of(f"@cert-authority *.example {line_of(ca.public_key())}\n")
    order = preferred_algorithms(entries, "login.example", 22, OFFERED)
    assert order[:4] == OFFERED[4:] and sorted(order) == sorted(OFFERED)
    assert preferred_algorithms(entries, "login.other", 22, OFFERED) == OFFERED


def test_the_types_of_listed_keys_are_asked_for_first():
    rsa_key = rsa.generate_private_key(65537, 2048)
    entries = entries_of(f"login.example {line_of(rsa_key.public_key())}\n")
    assert preferred_algorithms(entries, "login.example", 22, OFFERED)[:2] == ("rsa-sha2-512", "rsa-sha2-256")


def test_the_transport_asks_in_that_order(ca, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority * {line_of(ca.public_key())}\n")
    policy = KnownHostsPolicy("login.example", 22, [str(known)], global_files=())
    a, b = socket.socketpair()
    try:
        transport = policy.transport(a)
        keys = transport.preferred_keys
        assert keys[0].endswith("-cert-v01@openssh.com") and "ssh-ed25519" in keys
        assert all(k.endswith("-cert-v01@openssh.com") for k in keys[: len(keys) // 2])
    finally:
        a.close()
        b.close()


# ---- the policy, and appending new hosts ----------------------------------------------------


SITE_FILE = (
    b"# managed by hand \xe2\x80\x94 keep\n"
    b"@cert-authority *.other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzd\n"
    b"old.example sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t # fido\n"
    b"\xff not utf-8 \xfe\n"
    b"last.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBzd"
)  # no final newline


def test_an_unknown_host_is_refused_naming_the_files_and_the_fix(host, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_bytes(SITE_FILE)
    policy = KnownHostsPolicy("login.example", 2222, [str(known)], global_files=())
    with pytest.raises(UnknownHostKey) as refused:
        policy.missing_host_key(None, "[login.example]:2222", pkey(host.public_key()))
    message = str(refused.value)
    assert "[login.example]:2222 not found in known_hosts" in message and str(known) in message
    assert f"ssh-keyscan -p 2222 -t ed25519 login.example >> {known}" in message
    assert known.read_bytes() == SITE_FILE


def test_a_trusted_new_host_is_appended_and_nothing_else_changes(host, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_bytes(SITE_FILE)
    policy = KnownHostsPolicy("login.example", 22, [str(known)], trust_unknown=True, global_files=())
    policy.missing_host_key(None, "login.example", pkey(host.public_key()))
    after = known.read_bytes()
    assert after.startswith(SITE_FILE + b"\n")
    assert after[len(SITE_FILE) + 1 :].decode() == f"login.example {line_of(host.public_key())}\n"
    assert policy.check(pkey(host.public_key())) is not None  # now known: nothing more is written
    assert known.read_bytes() == after


def test_under_hash_known_hosts_the_appended_name_is_hashed(host, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_bytes(SITE_FILE + b"\n")
    policy = KnownHostsPolicy("login.example", 2222, [str(known)], trust_unknown=True, hash_names=True, global_files=())
    policy.check(pkey(host.public_key()))
    after = known.read_bytes()
    assert after.startswith(SITE_FILE + b"\n")
    name, key_type, data = after[len(SITE_FILE) + 1 :].decode().split()
    assert name.startswith("|1|") and match_hosts(name, "[login.example]:2222")
    assert f"{key_type} {data}" == line_of(host.public_key())


def test_a_certificate_from_no_listed_ca_records_its_plain_key(host, ca, tmp_path):
    known = tmp_path / "known_hosts"
    KnownHostsPolicy("login.example", 22, [str(known)], trust_unknown=True, global_files=()).check(
        pkey(certify(host, ca))
    )
    assert known.read_text() == f"login.example {line_of(host.public_key())}\n"


def test_a_new_file_and_directory_are_private(host, tmp_path):
    known = tmp_path / "new" / "known_hosts"
    append(str(known), "login.example", pkey(host.public_key()))
    assert stat.S_IMODE(os.stat(known).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(known.parent).st_mode) == 0o700


def test_global_files_are_read_but_never_written(host, tmp_path):
    user, site = tmp_path / "known_hosts", tmp_path / "ssh_known_hosts"
    site.write_text(f"login.example {line_of(host.public_key())}\n")
    policy = KnownHostsPolicy("login.example", 22, [str(user)], trust_unknown=True, global_files=[str(site)])
    assert policy.check(pkey(host.public_key())).path == str(site)
    assert not user.exists()


def test_a_changed_key_is_refused_even_when_trusting_new_hosts(host, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"login.example {line_of(ed25519_key().public_key())}\n")
    with pytest.raises(ChangedHostKey):
        KnownHostsPolicy("login.example", 22, [str(known)], trust_unknown=True, global_files=()).check(
            pkey(host.public_key())
        )


def test_the_runner_hashes_new_hosts_when_the_ssh_config_says_so(tmp_path):
    config = tmp_path / "config"
    config.write_text("Host login\n  HostName login.example\nHost *\n  HashKnownHosts yes\n")
    assert SSHRunner("dask@login", config_file=str(config)).hash_known_hosts
    config.write_text("Host login\n  HostName login.example\n")
    assert not SSHRunner("dask@login", config_file=str(config)).hash_known_hosts
