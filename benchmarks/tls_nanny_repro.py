"""Does a nanny'd TLS cluster drop its connections, with and without the fix?

A diagnostic, not a test (README "TLS", known problem; issue #15): each trial
starts, on a docker network of its own, one container running ``dask
scheduler`` with TLS and one running ``dask worker --nanny --nworkers 2`` with
TLS, then a client (``docker exec`` in the scheduler's container, as the
suite's client sits next to its scheduler) waits for the workers, runs small
tasks and stays a few seconds. A trial *dropped* if the client failed, a
worker registered twice or was removed, or any log shows a TLS/comm error.

Modes, run alternately in each round so that one run gives both rates:
``off`` (plain dask) and ``fix`` (``jqref.ssl_error_queue`` given as source
text in the dask config of every role: scheduler, nanny, worker, client).
Before the trials, a one-process check in the same image shows the mechanism
without dask: a TLS connection whose peer went away, then a healthy one read
on the same thread, without and with the fix.
``--detect`` adds to ``off`` a preload that only *looks* at the OpenSSL error
queue around each TLS operation and logs which call left an error queued
(LEFT-...) and which later call found one there (STALE-...).

The certificate is a throwaway from ``Security.temporary()`` in a temporary
directory, mounted read-only and deleted at the end, like the containers and
the network.

    .venv/bin/python benchmarks/tls_nanny_repro.py --trials 20 --detect
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import yaml
from distributed.security import Security

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from jqref import ssl_error_queue

PREFIX = f"jqref-tlsrepro-{os.getpid()}"
TLS_FLAGS = ["--tls-ca-file", "/tls/ca.pem", "--tls-cert", "/tls/cert.pem", "--tls-key", "/tls/key.pem"]

CLIENT = """
import sys, time
from distributed import Client
from distributed.security import Security

tasks, settle = int(sys.argv[1]), float(sys.argv[2])
security = Security(tls_ca_file="/tls/ca.pem", tls_client_cert="/tls/cert.pem",
                    tls_client_key="/tls/key.pem", require_encryption=True)
with Client("tls://127.0.0.1:8786", security=security, timeout=60) as client:
    client.wait_for_workers(2, timeout=30)
    for batch in range(3):
        assert sum(client.gather(client.map(abs, range(-tasks // 3, 0), pure=False))) > 0
    time.sleep(settle)
    print("REPRO-WORKERS", len(client.scheduler_info()["workers"]), flush=True)
"""

# Looks, never touches: ERR_peek_error leaves the queue as it is.
DETECTOR = """
import ctypes, functools, logging, os, ssl, threading, traceback, _ssl
_log = logging.getLogger("distributed.repro.detector")
_lib = ctypes.CDLL(_ssl.__file__)
_lib.ERR_peek_error.restype = ctypes.c_ulong
_lib.ERR_error_string_n.argtypes = (ctypes.c_ulong, ctypes.c_char_p, ctypes.c_size_t)
_seen = [0]

def _watch(cls, name):
    method = getattr(cls, name)
    if getattr(method, "_repro_watched", False):
        return
    @functools.wraps(method)
    def watched(*args, **kwargs):
        code = _lib.ERR_peek_error()
        if code:
            text = ctypes.create_string_buffer(256)
            _lib.ERR_error_string_n(code, text, 256)
            _seen[0] += 1
            if _seen[0] <= 5:
                _log.warning("STALE-OPENSSL-ERROR pid=%s thread=%s before %s.%s: %s\\n%s",
                             os.getpid(), threading.current_thread().name, cls.__name__, name,
                             text.value.decode(), "".join(traceback.format_stack(limit=6)[:-1]))
        try:
            return method(*args, **kwargs)
        except OSError as error:
            if not code and _lib.ERR_peek_error() and not isinstance(error, ssl.SSLWantReadError):
                try:
                    peer = args[0].getpeername()
                except Exception:
                    peer = "?"
                _log.warning("LEFT-OPENSSL-ERROR pid=%s %s.%s with peer %s raised %r and left its error queued",
                             os.getpid(), cls.__name__, name, peer, error)
            raise
    watched._repro_watched = True
    setattr(cls, name, watched)

for _cls, _names in ((ssl.SSLSocket, ("read", "write", "send", "do_handshake", "unwrap")),
                     (ssl.SSLObject, ("read", "write", "do_handshake", "unwrap"))):
    for _name in _names:
        _watch(_cls, _name)
"""

# The mechanism alone, one process, no dask servers: connection A's peer goes
# away and A's read fails; then healthy, idle B is read on the same thread.
MECHANISM = """
import select, socket, ssl, sys
if len(sys.argv) > 1:
    exec(compile(open(sys.argv[1]).read(), "fix", "exec"), {"__name__": "fix"})
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain("/tls/cert.pem", "/tls/key.pem")
client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE

def connected():
    left, right = socket.socketpair()
    ends = [server_ctx.wrap_socket(left, server_side=True, do_handshake_on_connect=False),
            client_ctx.wrap_socket(right, do_handshake_on_connect=False)]
    for end in ends:
        end.setblocking(False)
    waiting = list(ends)
    while waiting:
        for end in list(waiting):
            try:
                end.do_handshake()
                waiting.remove(end)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
    for end in ends:  # take the session tickets in
        try:
            end.recv(64)
        except ssl.SSLWantReadError:
            pass
    return ends

def outcome(call):
    try:
        return "returned %r" % (call(),)
    except Exception as error:
        return "%s: %s" % (type(error).__name__, error)

(a, a_peer), (b, b_peer) = connected(), connected()
a_peer.close()
select.select([a], [], [], 5)
print("  A, peer gone:    ", outcome(lambda: a.recv(64)))
print("  B, healthy, idle:", outcome(lambda: b.recv(64)), "(expected: SSLWantReadError)")
"""

ALL_ROLES = ("scheduler", "nanny", "worker", "client")
TROUBLE = re.compile(
    r"SSL|[Bb]roken pipe|EPIPE|Bad file descriptor|EBADF|CommClosedError|StreamClosedError"
    r"|Stream is closed|[Cc]onnection .*(broken|closed|reset)|Remove worker|Traceback"
    r"|Reconnecting|Lost connection|REPRO-CLIENT-HUNG|STALE-OPENSSL-ERROR|LEFT-OPENSSL-ERROR"
)


def docker(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def prepare(workdir: pathlib.Path, detect: bool) -> tuple[dict[str, pathlib.Path], list[str]]:
    """TLS files, the client script, one dask config folder per mode, and the
    preload texts (distributed logs them whole; they are not findings)."""
    security = Security.temporary()
    tls = workdir / "tls"
    tls.mkdir()
    (tls / "ca.pem").write_text(security.tls_ca_file)
    (tls / "cert.pem").write_text(security.tls_scheduler_cert)
    (tls / "key.pem").write_text(security.tls_scheduler_key)
    (workdir / "client.py").write_text(CLIENT)
    (workdir / "mechanism.py").write_text(MECHANISM)
    (workdir / "fix.py").write_text(ssl_error_queue.preload_source())
    configs = {}
    for mode, config in (
        ("off", {"distributed": {r: {"preload": [DETECTOR]} for r in ALL_ROLES}} if detect else {}),
        ("fix", {"distributed": {r: {"preload": [ssl_error_queue.preload_source()]} for r in ALL_ROLES}}),
    ):
        folder = workdir / f"config-{mode}"
        folder.mkdir()
        (folder / "repro.yaml").write_text(yaml.safe_dump(config))
        configs[mode] = folder
    for path in workdir.rglob("*"):  # the containers run as root, but keep it simple for any user
        path.chmod(0o755 if path.is_dir() else 0o644)
    workdir.chmod(0o755)
    return configs, [DETECTOR, ssl_error_queue.preload_source()]


def run_trial(
    args, workdir: pathlib.Path, config: pathlib.Path, network: str, trial: str, preloads: list[str], nanny: bool = True
) -> dict:
    scheduler, workers = f"{PREFIX}-{trial}-s", f"{PREFIX}-{trial}-w"
    common = [
        "run",
        "-d",
        "--network",
        network,
        "-v",
        f"{workdir}:/repro:ro",
        "-v",
        f"{workdir / 'tls'}:/tls:ro",
        "-v",
        f"{config}:/dask-config:ro",
        "-e",
        "DASK_CONFIG=/dask-config",
        "--memory",
        "1g",
    ]
    started = time.monotonic()
    try:
        docker(
            *common,
            "--name",
            scheduler,
            "--hostname",
            scheduler,
            args.image,
            "dask",
            "scheduler",
            "--protocol",
            "tls",
            "--port",
            "8786",
            "--no-dashboard",
            *TLS_FLAGS,
        )
        worker = [
            "dask",
            "worker",
            f"tls://{scheduler}:8786",
            "--nthreads",
            "1",
            "--memory-limit",
            "400MiB",
            "--no-dashboard",
            *TLS_FLAGS,
        ]
        if nanny:
            command = [*worker, "--nanny", "--nworkers", "2"]
        else:  # --no-nanny takes one worker per command
            line = shlex.join([*worker, "--no-nanny"])
            command = ["sh", "-c", f"{line} & {line} & wait"]
        docker(*common, "--name", workers, "--hostname", workers, args.image, *command)
        try:
            client = docker(
                "exec",
                "-e",
                "DASK_CONFIG=/dask-config",
                scheduler,
                "python3",
                "/repro/client.py",
                str(args.tasks),
                str(args.settle),
                check=False,
                timeout=args.client_timeout,
            )
            client_rc, logs = client.returncode, {"client": client.stdout + client.stderr}
        except subprocess.TimeoutExpired as hung:  # a client that lost the scheduler may wait for ever
            output = (hung.stdout or b"") + (hung.stderr or b"")
            client_rc, logs = None, {"client": output.decode(errors="replace") + "\nREPRO-CLIENT-HUNG"}
        for name, container in (("scheduler", scheduler), ("workers", workers)):
            out = docker("logs", container, check=False)
            logs[name] = out.stdout + out.stderr
    finally:
        docker("rm", "-f", scheduler, workers, check=False)
    for name, text in logs.items():
        for preload in preloads:
            text = text.replace(preload, "<preload>")
        logs[name] = text
    registrations = len(re.findall(r"Register worker", logs["scheduler"]))
    trouble = [
        f"{name}: {line.strip()}" for name, text in logs.items() for line in text.splitlines() if TROUBLE.search(line)
    ]
    finished = "REPRO-WORKERS 2" in logs["client"]
    stale = sum("STALE-OPENSSL-ERROR" in line for line in trouble)
    diagnostics = sum("-OPENSSL-ERROR" in line for line in trouble)
    dropped = client_rc != 0 or not finished or registrations != 2 or len(trouble) > diagnostics
    return {
        "trial": trial,
        "dropped": dropped,
        "client_rc": client_rc,
        "registrations": registrations,
        "stale_error_reports": stale,
        "trouble": trouble[:40],
        "seconds": round(time.monotonic() - started, 1),
        "logs": logs,
    }


def show_mechanism(args, workdir: pathlib.Path) -> None:
    for label, extra in (("without the fix", []), ("with the fix", ["/repro/fix.py"])):
        out = docker(
            "run",
            "--rm",
            "-v",
            f"{workdir}:/repro:ro",
            "-v",
            f"{workdir / 'tls'}:/tls:ro",
            args.image,
            "python3",
            "/repro/mechanism.py",
            *extra,
            check=False,
        )
        print(f"two TLS connections on one thread, {label}:\n{out.stdout}{out.stderr}", end="", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trials",
        type=int,
        default=10,
        help="rounds; each runs every mode once (0: only the one-process mechanism check)",
    )
    parser.add_argument(
        "--modes",
        default="off,fix",
        help="comma-separated, from: off, fix, off-nonanny, fix-nonanny (--no-nanny workers)",
    )
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds the client stays after its tasks")
    parser.add_argument("--detect", action="store_true", help="log stale OpenSSL errors in mode off")
    parser.add_argument("--client-timeout", type=float, default=120, help="seconds before a client counts as hung")
    parser.add_argument("--image", default="jqref/node:trixie")
    parser.add_argument("--save", type=pathlib.Path, help="write every trial, logs included, to this JSON file")
    args = parser.parse_args()
    modes = args.modes.split(",")

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="jqref-tlsrepro-"))
    network = f"{PREFIX}-net"
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    try:
        configs, preloads = prepare(workdir, args.detect)
        show_mechanism(args, workdir)
        docker("network", "create", network)
        for round_ in range(args.trials):
            for mode in modes if round_ % 2 == 0 else reversed(modes):
                result = run_trial(
                    args,
                    workdir,
                    configs[mode.removesuffix("-nonanny")],
                    network,
                    f"{mode}{round_}",
                    preloads,
                    nanny=not mode.endswith("-nonanny"),
                )
                results[mode].append(result)
                first = next((t for t in result["trouble"] if "-OPENSSL-ERROR" not in t), "")
                print(
                    f"round {round_ + 1:3d} {mode:3s}: {'DROPPED' if result['dropped'] else 'ok':7s} "
                    f"{result['seconds']:5.1f}s registrations={result['registrations']} "
                    f"stale-error reports={result['stale_error_reports']} {first[:150]}",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        docker("network", "rm", network, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        if args.save:
            args.save.write_text(json.dumps(results, indent=1))
    print()
    for mode in modes:
        done = results[mode]
        print(
            f"{mode}: {sum(r['dropped'] for r in done)} of {len(done)} trials dropped connections; "
            f"{sum(r['stale_error_reports'] > 0 for r in done)} saw a stale OpenSSL error before a TLS call"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
