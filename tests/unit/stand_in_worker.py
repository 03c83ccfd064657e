"""A compute node's Python for job scripts run by the real shell in unit tests.

As the worker command it logs "started <whether SIGUSR2 is ignored>", then each SIGTERM it gets, and exits
7 a second after the first, as a closing worker would.
"""

from __future__ import annotations

import subprocess
import sys
import time

SOURCE = f"""#!{sys.executable}
import os, signal, sys, time
log = os.environ["SIGNAL_LOG"]
def term(*_):
    with open(log, "a") as f:
        f.write("TERM\\n")
    signal.setitimer(signal.ITIMER_REAL, 1.0)
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGALRM, lambda *_: sys.exit(7))
with open(log, "a") as f:
    f.write(f"started {{signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN}}\\n")
while True:
    time.sleep(0.05)
"""


def install(directory) -> str:
    """The stand-in as an executable in `directory`; its path."""
    python = directory / "python"
    python.write_text(SOURCE)
    python.chmod(0o755)
    return str(python)


def run_until_started(script, log, timeout: float = 20) -> subprocess.Popen:
    """Run job script `script` with bash, in a session of its own, until its worker has started."""
    shell = subprocess.Popen(
        ["bash", str(script)], env={"PATH": "/usr/bin:/bin", "SIGNAL_LOG": str(log)}, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while not (log.exists() and "started" in log.read_text()):
        assert time.monotonic() < deadline and shell.poll() is None, "the worker never started"
        time.sleep(0.02)
    return shell
