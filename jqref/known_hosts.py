"""known_hosts as OpenSSH reads and writes it.

paramiko's own ``HostKeys`` is not enough for real sites: a ``@cert-authority``
or ``@revoked`` line makes it raise ``InvalidHostKey`` (so every connection
fails), and saving a new host rewrites the whole file without its comments and
the key types paramiko cannot read. Here, as in OpenSSH:

- Host fields are comma-separated patterns with ``*`` and ``?``, any of them
  negated by ``!`` (a negated match excludes the host whatever else matches),
  compared without regard to case; or one hashed name, ``|1|salt|hash``
  (``HashKnownHosts``). A server on a port other than 22 is listed as
  ``[host]:port``.
- ``@cert-authority`` lines: a host certificate signed by a CA listed for the
  host is accepted, once its signature, type (host), principals (the host's
  name, unless it lists none) and validity are checked. A certificate from a CA
  not listed falls back to its plain key.
- ``@revoked`` lines: a key listed so for the host is refused, and so is a
  certificate signed by such a CA.
- A line that cannot be read (a key type or marker unknown here, broken base64)
  is skipped, never fatal.
- A new host's key, when trusted, is appended as one line (its name hashed
  under ``HashKnownHosts yes``); nothing else in the file changes.

Keys are compared by their public-key blobs, so an entry of a type paramiko
does not know is kept and simply never matches. Certificates are read and
verified with `cryptography`'s SSH certificate API.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import paramiko
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    SSHCertificate,
    SSHCertificateType,
    load_ssh_public_identity,
)

logger = logging.getLogger(__name__)

#: OpenSSH's GlobalKnownHostsFile: read after the user's files, never written.
GLOBAL_FILES = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
CERT_SUFFIX = "-cert-v01@openssh.com"
MARKERS = ("@cert-authority", "@revoked")


# ---- errors -----------------------------------------------------------------


class HostKeyRefused(paramiko.SSHException):
    """known_hosts does not vouch for the server's host key. Not worth retrying."""

    def __str__(self):
        return str(self.args[0])


class UnknownHostKey(HostKeyRefused):
    """No line of known_hosts is for this host (``StrictHostKeyChecking yes``)."""


class RevokedHostKey(HostKeyRefused):
    """The key, or the CA that signed its certificate, is listed ``@revoked``."""


class InvalidHostCertificate(HostKeyRefused):
    """A certificate from a CA listed for the host, which OpenSSH would refuse too."""


class ChangedHostKey(HostKeyRefused, paramiko.BadHostKeyException):
    """known_hosts lists another key for the host."""

    def __init__(self, message: str, hostname: str, got_key: paramiko.PKey, expected_key: paramiko.PKey):
        paramiko.SSHException.__init__(self, message)
        self.hostname, self.key, self.expected_key = hostname, got_key, expected_key


# ---- reading ----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of a known_hosts file that could be read."""

    path: str
    line: int
    marker: str  # "", "@cert-authority" or "@revoked"
    hosts: str  # the host field as written: patterns, or one hashed name
    key_type: str
    key: bytes  # the public key blob

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def matches(self, name: str) -> bool:
        return match_hosts(self.hosts, name)


def host_name(host: str, port: int) -> str:
    """The name known_hosts lists a server under: `host`, or ``[host]:port`` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def _pattern_matches(pattern: str, name: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name, re.DOTALL) is not None


def _hashed_matches(field: str, name: str) -> bool:
    _, _, salt, digest = field.split("|")
    expected = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(expected, base64.b64decode(digest))


def match_hosts(hosts: str, name: str) -> bool:
    """Whether a line's host field covers `name` (``host`` or ``[host]:port``):
    its one hashed name is `name`, or one of its patterns matches and none of
    its negated patterns (``!pattern``) does."""
    name = name.lower()
    if hosts.startswith("|"):
        return _hashed_matches(hosts, name)
    matched = False
    for pattern in hosts.split(","):
        negated = pattern.startswith("!")
        if _pattern_matches(pattern[1:] if negated else pattern, name):
            if negated:
                return False
            matched = True
    return matched


def hash_name(name: str, salt: bytes | None = None) -> str:
    """`name` as ``HashKnownHosts`` writes it: ``|1|base64(salt)|base64(HMAC-SHA1(salt, name))``."""
    salt = os.urandom(20) if salt is None else salt
    digest = hmac.new(salt, name.lower().encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def _blob_type(blob: bytes) -> str | None:
    """The key type a public key blob starts with (an SSH string)."""
    if len(blob) < 4:
        return None
    size = int.from_bytes(blob[:4], "big")
    name = blob[4 : 4 + size]
    if len(name) != size:
        return None
    try:
        return name.decode("ascii")
    except UnicodeDecodeError:
        return None


def _valid_hash(field: str) -> bool:
    parts = field.split("|")
    if len(parts) != 4 or parts[:2] != ["", "1"]:
        return False
    try:
        return len(base64.b64decode(parts[3], validate=True)) == hashlib.sha1().digest_size and bool(
            base64.b64decode(parts[2], validate=True)
        )
    except binascii.Error:
        return False


def parse_line(text: str, path: str, number: int) -> Entry | None:
    """The entry a line of `path` holds; None for comments, blank lines and
    lines that cannot be read (logged, and skipped as OpenSSH skips them)."""
    fields = text.split()
    if not fields or fields[0].startswith("#"):
        return None

    def skip(why: str) -> None:
        logger.debug("%s:%d skipped: %s", path, number, why)

    marker = ""
    if fields[0].startswith("@"):
        marker, *fields = fields
        if marker not in MARKERS:
            skip(f"unknown marker {marker}")
            return None
    if len(fields) < 3:
        skip("not 'hosts key-type base64-key'")
        return None
    hosts, key_type, data = fields[:3]
    if hosts.startswith("|") and not _valid_hash(hosts):
        skip("a hashed host name that is not |1|salt|hash")
        return None
    try:
        key = base64.b64decode(data, validate=True)
    except binascii.Error:
        skip("the key is not base64")
        return None
    if _blob_type(key) != key_type:
        skip(f"the key is not of type {key_type}")
        return None
    return Entry(path, number, marker, hosts, key_type, key)


def parse(text: str, path: str) -> list[Entry]:
    """Every readable entry of one file's text, in order."""
    entries = (parse_line(line, path, number) for number, line in enumerate(text.splitlines(), 1))
    return [entry for entry in entries if entry is not None]


def read(paths: Iterable[str]) -> list[Entry]:
    """The entries of the files that exist among `paths`, in order."""
    entries: list[Entry] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            continue
        except OSError as e:
            logger.warning("known_hosts file %s not read: %s", path, e)
            continue
        entries += parse(text, path)
    return entries


# ---- checking ---------------------------------------------------------------


def _fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _openssh_blob(public_key) -> bytes:
    return base64.b64decode(public_key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).split()[1])


class ListedKey(paramiko.PKey):
    """A public key of a type paramiko cannot load (``ssh-dss``, the ``sk-``
    types), as a known_hosts line lists it: its type and blob, which is all a
    `paramiko.BadHostKeyException`'s ``expected_key`` is read for."""

    def __init__(self, key_type: str, blob: bytes):
        self.key_type, self.blob = key_type, blob
        self.public_blob = None  # as paramiko's own keys have it: no certificate

    def asbytes(self) -> bytes:
        return self.blob

    def get_name(self) -> str:
        return self.key_type

    @property
    def _fields(self) -> tuple[str, bytes]:
        return self.key_type, self.blob


def _pkey(entry: Entry) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_type_string(entry.key_type, entry.key)
    except Exception:  # a type paramiko does not know, or a broken key: its type and blob as listed
        return ListedKey(entry.key_type, entry.key)


def certificate(key: paramiko.PKey) -> SSHCertificate | None:
    """The OpenSSH certificate a server presented with its host key, if it did."""
    blob = getattr(key, "public_blob", None)
    if blob is None or not blob.key_type.endswith(CERT_SUFFIX):
        return None
    try:
        identity = load_ssh_public_identity(blob.key_type.encode() + b" " + base64.b64encode(blob.key_blob))
    except (ValueError, UnsupportedAlgorithm) as e:
        logger.debug("host certificate %s not readable (%s): its plain key is checked", blob.key_type, e)
        return None
    # A certificate type reads as a certificate; a plain key here would be cryptography's change, not the server's.
    return identity if isinstance(identity, SSHCertificate) else None


def _when(timestamp: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "the end of time"


def certificate_problem(cert: SSHCertificate, key: paramiko.PKey, host: str, now: float) -> str | None:
    """Why OpenSSH would refuse `cert` for `host` (its CA aside), or None."""
    try:
        cert.verify_cert_signature()
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return "its signature does not verify"
    if _openssh_blob(cert.public_key()) != key.asbytes():
        return "it certifies another key than the one the server proved it holds"
    if cert.type != SSHCertificateType.HOST:
        return "it is a user certificate, not a host certificate"
    principals = [p.decode(errors="replace") for p in cert.valid_principals]
    if principals and host.lower() not in principals:
        return f"it is for {', '.join(principals)}, not for {host}"
    if now < cert.valid_after:
        return f"it is not valid before {_when(cert.valid_after)}"
    if now >= cert.valid_before:
        return f"it expired at {_when(cert.valid_before)}"
    if cert.critical_options:
        names = ", ".join(name.decode(errors="replace") for name in cert.critical_options)
        return f"it has critical options, which no host certificate may have ({names})"
    return None


def check(entries: Sequence[Entry], host: str, port: int, key: paramiko.PKey, now: float | None = None) -> Entry | None:
    """The entry that vouches for `key` as the host key of `host`:`port`, or
    None if no plain key or CA is listed for the host at all. Raises
    `RevokedHostKey`, `InvalidHostCertificate` or `ChangedHostKey`."""
    now = time.time() if now is None else now
    name = host_name(host, port)
    mine = [entry for entry in entries if entry.matches(name)]
    plain = key.asbytes()
    cert = certificate(key)
    ca = _openssh_blob(cert.signature_key()) if cert is not None else None
    for entry in mine:
        if entry.marker == "@revoked" and entry.key in (plain, ca):
            raise RevokedHostKey(_revoked_message(name, key, entry, is_ca=entry.key == ca))
    if cert is not None:
        authorities = [entry for entry in mine if entry.marker == "@cert-authority" and entry.key == ca]
        if authorities:
            problem = certificate_problem(cert, key, host, now)
            if problem:
                raise InvalidHostCertificate(_invalid_certificate_message(name, host, problem, authorities[0]))
            return authorities[0]
        logger.debug("no CA listed for %s signed its host certificate: its plain key is checked", name)
    listed = [entry for entry in mine if not entry.marker]
    for entry in listed:
        if entry.key == plain:
            return entry
    if listed:
        entry = next((e for e in listed if e.key_type == key.get_name()), listed[0])
        raise ChangedHostKey(_changed_message(name, host, port, key, entry), name, key, _pkey(entry))
    return None


def preferred_algorithms(entries: Sequence[Entry], host: str, port: int, offered: Sequence[str]) -> tuple[str, ...]:
    """`offered` host key algorithms in the order to ask the server for them,
    as OpenSSH orders them: certificates first where a CA is listed for the
    host, then the types of its listed keys, then the rest."""
    name = host_name(host, port)
    mine = [entry for entry in entries if entry.marker != "@revoked" and entry.matches(name)]
    first = []
    if any(entry.marker == "@cert-authority" for entry in mine):
        first += [a for a in offered if a.endswith(CERT_SUFFIX)]
    types = {entry.key_type for entry in mine if not entry.marker}
    first += [a for a in offered if not a.endswith(CERT_SUFFIX) and ("ssh-rsa" if a.startswith("rsa-") else a) in types]
    return tuple(first + [a for a in offered if a not in first])


# ---- messages: the host, the file and line, and the fix --------------------------


def _scan(host: str, port: int, key: paramiko.PKey) -> str:
    return f"ssh-keyscan {'' if port == 22 else f'-p {port} '}-t {key.algorithm_name.lower()} {host}"


def _unknown_message(name: str, host: str, port: int, key: paramiko.PKey, files: Sequence[str]) -> str:
    return (
        f"host key for {name} not found in known_hosts ({', '.join(files) or 'no files'}): the server offers "
        f"{key.get_name()} {key.fingerprint}. If its administrators confirm that fingerprint, add it with "
        f"`{_scan(host, port, key)} >> {files[0] if files else '~/.ssh/known_hosts'}` (or connect once with "
        f"trust_unknown_hosts=True); if the site signs its host keys, add its CA as "
        f"`@cert-authority <host patterns> <CA public key>`."
    )


def _changed_message(name: str, host: str, port: int, key: paramiko.PKey, entry: Entry) -> str:
    return (
        f"host key for {name} has changed: the server offers {key.get_name()} {key.fingerprint}, but "
        f"{entry.where} lists {entry.key_type} {_fingerprint(entry.key)} for it. Someone may be intercepting "
        f"the connection, or the host was given a new key. Only if its administrators confirm the new key: "
        f"`ssh-keygen -f {entry.path} -R {name}` removes the old one, then "
        f"`{_scan(host, port, key)} >> {entry.path}` adds it."
    )


def _revoked_message(name: str, key: paramiko.PKey, entry: Entry, is_ca: bool) -> str:
    what = (
        f"the CA that signed the host certificate of {name} ({entry.key_type} {_fingerprint(entry.key)})"
        if is_ca
        else f"the host key of {name} ({key.get_name()} {key.fingerprint})"
    )
    needs = "a certificate from a CA that is not revoked" if is_ca else "a new key"
    return (
        f"{what} is revoked at {entry.where} (@revoked): refusing to connect. The host needs {needs} from "
        f"its administrators; do not delete the @revoked line to get in."
    )


def _invalid_certificate_message(name: str, host: str, problem: str, authority: Entry) -> str:
    return (
        f"host certificate of {name} refused: {problem} (its CA is listed at {authority.where}). Its "
        f"administrators need to issue a valid one (`ssh-keygen -s <CA key> -h -n {host} <host key>.pub`); "
        f"OpenSSH refuses this certificate too."
    )


# ---- writing ----------------------------------------------------------------


def append(path: str, name: str, key: paramiko.PKey, hashed: bool = False) -> str:
    """Record `key` for `name` as one line at the end of `path`, as ssh does
    for a new host: the file's content before it is kept byte for byte (a
    last line without a newline is given one). Returns the line."""
    line = f"{hash_name(name) if hashed else name} {key.get_name()} {key.get_base64()}\n"
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600), "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        newline = b""
        if end:
            f.seek(end - 1)
            newline = b"" if f.read(1) == b"\n" else b"\n"
        f.write(newline + line.encode())
    return line


# ---- with paramiko ----------------------------------------------------------


class _Transport(paramiko.Transport):
    """A transport that asks the server for its host key algorithms in the
    order `first_host_key_algorithms` gives (paramiko offers certificates only
    after plain keys, so a server would never show its certificate)."""

    first_host_key_algorithms: tuple[str, ...] = ()

    @property
    def preferred_keys(self):
        offered = super().preferred_keys
        first = tuple(a for a in self.first_host_key_algorithms if a in offered)
        return first + tuple(a for a in offered if a not in first)


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """The host-key check of one server (`host`, `port`) for paramiko's
    SSHClient, against `files` (then OpenSSH's global files).

    Load no keys into the client, so that it asks this policy about every
    key, and pass `transport` as ``connect(transport_factory=...)`` so that
    the server is asked first for what known_hosts can vouch for (a
    certificate where a CA is listed). A host with no entry at all is refused
    (`UnknownHostKey`), or with `trust_unknown` recorded in ``files[0]``
    (hashed if `hash_names`, as under ``HashKnownHosts yes``)."""

    def __init__(
        self,
        host: str,
        port: int,
        files: Sequence[str],
        *,
        trust_unknown: bool = False,
        hash_names: bool = False,
        global_files: Sequence[str] = GLOBAL_FILES,
        clock: Callable[[], float] = time.time,
    ):
        if trust_unknown and not files:
            raise ValueError("trusting unknown hosts needs a known_hosts file to record them in")
        self.host, self.port = host, port
        self.files = tuple(files)
        self.read_files = self.files + tuple(f for f in global_files if f not in self.files)
        self.trust_unknown = trust_unknown
        self.hash_names = hash_names
        self.clock = clock

    def transport(self, sock, **kwargs) -> paramiko.Transport:
        transport = _Transport(sock, **kwargs)
        transport.first_host_key_algorithms = preferred_algorithms(
            read(self.read_files), self.host, self.port, transport.preferred_keys
        )
        return transport

    def check(self, key: paramiko.PKey) -> Entry | None:
        """The entry that vouches for `key`; None if it was trusted as new and recorded."""
        entry = check(read(self.read_files), self.host, self.port, key, self.clock())
        if entry is not None:
            return entry
        name = host_name(self.host, self.port)
        if not self.trust_unknown:
            raise UnknownHostKey(_unknown_message(name, self.host, self.port, key, self.files))
        append(self.files[0], name, key, hashed=self.hash_names)
        logger.warning(
            "trusting new host key %s %s for %s: recorded in %s", key.get_name(), key.fingerprint, name, self.files[0]
        )
        return None

    def missing_host_key(self, client, hostname, key):
        self.check(key)
