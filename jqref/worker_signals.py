"""A nanny's worker process closes itself on SIGTERM instead of dying of it.

Run inside the jobs as a distributed preload (its source text travels in the
job script, since the compute nodes do not have jqref). Batch systems stop a
job by signalling its processes, then kill them after a grace period.
`dask worker` handles SIGTERM in the process the job started, the nanny,
which asks its worker process to close; but scancel, the Slurm-backed qdel
and PBS signal every process of the job, and the worker process, which
handles nothing, died of the signal while its nanny was asking it to close.
A worker that closes itself tells the scheduler, which hands its tasks to
the other workers at once. Needs nothing but distributed.
"""

import asyncio
import multiprocessing
import signal

from distributed import Worker


def dask_setup(server):
    """Called by distributed once `server` (a Nanny or a Worker) has started."""
    if isinstance(server, Worker) and multiprocessing.parent_process() is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _close, server)


# Tasks started and not awaited, held until done: the event loop keeps only weak references to tasks.
_closing: set[asyncio.Future] = set()


def _close(worker):
    task = asyncio.ensure_future(worker.close(reason=f"signal-{signal.SIGTERM.value}"))
    _closing.add(task)
    task.add_done_callback(_closing.discard)
