"""Versions of distributed that jqref's reliance on its private behaviour was checked against.

`placement.reconnect` replaces `distributed.Client._reconnect`, a private
coroutine, for the clients of detached clusters. It relies on what that
method does in the version named here: it cancels every future in
`Client.futures`, then clears that dict, then retries the connection until
`Client._timeout` has passed. A newer distributed may do otherwise, and
nothing in its public interface would say so: jqref then warns, naming
both versions, instead of leaving a dropped client to lose its futures
without a word. An older distributed is refused by the package's own
dependency bound (pyproject.toml), which is this same version.
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import PackageNotFoundError, version

#: The distributed release `placement.reconnect`'s patch was read against and
#: tested with (requirements/lock.txt). Raise it after checking
#: `Client._reconnect` in a newer release and running the detached-session
#: tests (tests/unit/test_detached_session.py) with it.
DISTRIBUTED_CHECKED = "2026.8.0"


class UntestedDistributedWarning(UserWarning):
    """The installed distributed is newer than the one jqref's patch of its
    private behaviour was checked against."""


def release(text: str) -> tuple[int, ...]:
    """The numeric release of a version string: '2026.8.1.dev3+g1234' is
    (2026, 8, 1); an unreadable version is (), older than any release."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    if match is None:
        return ()
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:  # 2026.8 is 2026.8.0
        numbers.pop()
    return tuple(numbers)


def installed_distributed() -> str:
    try:
        return version("distributed")
    except PackageNotFoundError:  # importable without metadata (a source tree on the path)
        import distributed

        return distributed.__version__


def untested_distributed(installed: str | None = None, checked: str = DISTRIBUTED_CHECKED) -> str | None:
    """What to tell the user if `installed` (default: the distributed this
    process imports) is newer than `checked`; None if it is not."""
    installed = installed_distributed() if installed is None else installed
    if release(installed) <= release(checked):
        return None
    return (
        f"distributed {installed} is installed, but jqref {_jqref_version()} was checked against distributed "
        f"{checked} only: for clusters made with detach=True it replaces the private method "
        f"distributed.Client._reconnect, relying on what it does in {checked}. If a client of a detached "
        f"cluster loses its futures when its connection drops, install distributed=={checked}, or a jqref "
        "release checked against the newer distributed."
    )


_warned = False


def warn_if_untested_distributed(stacklevel: int = 2) -> bool:
    """Warn once per process (`UntestedDistributedWarning`) if the installed
    distributed is newer than `DISTRIBUTED_CHECKED`; whether it is."""
    global _warned
    message = untested_distributed()
    if message is not None and not _warned:
        _warned = True
        warnings.warn(message, UntestedDistributedWarning, stacklevel=stacklevel + 1)
    return message is not None


def _jqref_version() -> str:
    try:
        return version("jqref")
    except PackageNotFoundError:
        return "(from a source tree)"
