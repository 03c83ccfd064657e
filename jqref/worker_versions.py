"""A job's first process stops at once when its Python or distributed differs from the client's.

Run inside the jobs as a distributed preload, from a file the cluster writes
(the compute nodes do not have jqref), in the nanny, or in the worker when
there is none. That file is this source with the client's versions filled
in below. A mismatch otherwise shows only later, as workers that crash on
their first task or cannot read what the scheduler sends them. Needs
nothing but the standard library.
"""

import sys
from importlib.metadata import version

#: The client's Python and distributed: none here, the client's in the file a cluster writes.
CLIENT_VERSIONS = None


def here() -> tuple[str, str]:
    """This process's Python (major.minor) and distributed versions."""
    return "%d.%d" % sys.version_info[:2], version("distributed")


def for_this_client(source: str) -> str:
    """This module's `source` with this process's versions as the client's."""
    filled = source.replace("\nCLIENT_VERSIONS = None\n", f"\nCLIENT_VERSIONS = {here()!r}\n", 1)
    if filled == source:
        raise ValueError("jqref.worker_versions: no 'CLIENT_VERSIONS = None' line to fill in")
    return filled


def mismatch(client) -> str | None:
    """What differs between this process and the `client`'s versions, said for the job's error file; None if nothing."""
    if client is None or here() == tuple(client):
        return None
    return (
        "jqref: this worker environment has Python %s and distributed %s, but the client has Python %s and "
        "distributed %s; give the cluster python= an environment with the client's versions" % (*here(), *client)
    )


if __name__ != "jqref.worker_versions":  # loaded as a preload: check before anything connects
    problem = mismatch(CLIENT_VERSIONS)
    if problem:
        sys.exit(problem)
