"""A whole Dask cluster inside one allocation: each process of a parallel launch plays one part.

Launched as N copies of one script (``srun -n 4 python script.py`` inside an
allocation, or ``mpirun -n 4 ...``), the process of rank 0 runs the
scheduler, rank 1 runs the script's own code inside the ``with`` block (the
client), and every other rank runs a worker named by its rank. They meet
through a scheduler file on a directory they share. When the client's block
ends, it shuts the scheduler down, and the workers with it; the scheduler's
and workers' processes leave their ``with`` statement by `SystemExit`, so the
block runs once, in the client's process. If the scheduler never starts or
dies, the others stop within a bounded time: the client and workers wait
`start_timeout` for its file, and workers stop after their `death_timeout`.

TLS by default, as every jqref placement: rank 0 makes the cluster's
certificates and writes them, for the other ranks of the same user, to a
private file (0600) beside the scheduler file, removed when it ends.

dask-jobqueue calls these runners (`BaseRunner`, `SLURMRunner`,
`AsyncRunner`); in jqref a runner is what runs batch commands (``runner=``),
so here they are allocations, and dask-jobqueue's names are aliases.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import pathlib
from typing import Any

from distributed import Client, Scheduler, Worker
from distributed.core import Status
from distributed.security import Security
from distributed.utils import LoopRunner, SyncMethodMixin, import_term

from .. import ssl_error_queue
from ..preload import roles_guard, with_preloads
from ..private_files import replace_privately
from ..tls import cluster_security, security_contents
from ..tls_roles import has_roles

logger = logging.getLogger(__name__)

#: How long the client and the workers wait for the scheduler to say where it is.
START_TIMEOUT = 120.0
#: How long the client's rank tries to reach the scheduler to shut it down at the end of its block.
SHUTDOWN_TIMEOUT = 10.0
#: A worker whose scheduler is gone stops after this long, unless worker_options say otherwise.
WORKER_DEATH_TIMEOUT = 60.0


class Role(enum.Enum):
    scheduler = "scheduler"
    client = "client"
    worker = "worker"


def role_of(rank: int, scheduler: bool = True, client: bool = True) -> Role:
    """The part of the process of `rank`: the scheduler first, then the client, then workers."""
    parts = [Role.scheduler] * scheduler + [Role.client] * client
    return parts[rank] if rank < len(parts) else Role.worker


def check_size(size: int, scheduler: bool = True, client: bool = True) -> None:
    """Refuse a launch too small to have a worker, naming what it needs."""
    needed = scheduler + client + 1
    if size < needed:
        raise ValueError(
            f"{size} process(es) were launched, but a scheduler, a client and workers need at least {needed}: "
            f"launch at least {needed} (e.g. srun -n {needed + 1} ...)"
        )


class Allocation(SyncMethodMixin):
    """One process's part in a Dask cluster spread over one parallel launch.

    Subclasses say which rank this process is (`rank`) and how the ranks
    share the scheduler's address and TLS material (`publish`, `discover`).
    `scheduler=False`: a scheduler runs elsewhere already (found as the
    subclass finds it); `client=False`: no rank runs the block, workers only.
    """

    def __init__(
        self,
        scheduler: bool = True,
        scheduler_options: dict | None = None,
        worker_class: str | type | None = None,
        worker_options: dict | None = None,
        client: bool = True,
        client_options: dict | None = None,
        loop=None,
        asynchronous: bool = False,
        security: Security | bool | None = None,
        start_timeout: float = START_TIMEOUT,
    ):
        if client and not scheduler:
            raise ValueError("client=True needs scheduler=True: the client's rank comes after the scheduler's")
        self.scheduler = scheduler
        self.client = client
        self.scheduler_options = dict(scheduler_options or {})
        self.worker_class = import_term(worker_class) if isinstance(worker_class, str) else worker_class or Worker
        self.worker_options = {"death_timeout": WORKER_DEATH_TIMEOUT, **(worker_options or {})}
        self.client_options = dict(client_options or {})
        self.security = security
        self.start_timeout = start_timeout
        self.role: Role | None = None
        self.scheduler_address: str | None = None
        self.n_workers: int | None = None
        self.status = Status.created
        self._asynchronous = asynchronous
        self._loop_runner = LoopRunner(loop=loop, asynchronous=asynchronous)
        self._loop_runner.start()

    @property
    def loop(self):
        return self._loop_runner.loop

    # ---- what a kind of launch declares ----------------------------------

    async def rank(self) -> int:
        """This process's rank in the launch."""
        raise NotImplementedError

    async def size(self) -> int | None:
        """How many processes the launch has, where the launcher says."""
        return None

    async def publish(self, address: str, security: Security | None) -> None:
        """Tell the other ranks where the scheduler listens and its TLS material."""
        raise NotImplementedError

    async def discover(self) -> tuple[str, Security | None]:
        """Where the scheduler listens and its TLS material, once published."""
        raise NotImplementedError

    async def retract(self) -> None:
        """Remove what `publish` left, once the scheduler has ended."""

    # ---- the parts ---------------------------------------------------------

    async def _start(self) -> None:
        if self.status != Status.created:
            return
        self.status = Status.starting
        size = await self.size()
        if size is not None:
            check_size(size, self.scheduler, self.client)
        self.role = role_of(await self.rank(), self.scheduler, self.client)
        #: The launch's worker processes, where the launcher says how many there are (dask-jobqueue's name).
        self.n_workers = None if size is None else size - self.scheduler - self.client
        if self.security is not False:
            ssl_error_queue.apply()  # every TLS process of a cluster, as jqref's other placements
        if self.role is Role.scheduler:
            await self._run_scheduler()
        elif self.role is Role.worker:
            await self._run_worker()
        else:
            self.scheduler_address, security = await self._discovered()
            self.security = security
            await self._wait_for_the_workers()
            self.status = Status.running

    async def _wait_for_the_workers(self) -> None:
        """The block starts once the launch's workers have joined, where their
        number is known, so that its first tasks may name any of them; a rank
        that never starts delays it by `start_timeout`, then it runs anyway."""
        if not self.n_workers:
            return
        try:
            async with Client(
                self.scheduler_address, security=self.security, asynchronous=True, **self.client_options
            ) as client:
                await client.wait_for_workers(self.n_workers, timeout=self.start_timeout)
        except TimeoutError:
            logger.warning(
                "not all %d of the launch's workers joined within %g s: the block runs without the rest",
                self.n_workers,
                self.start_timeout,
            )

    async def _discovered(self) -> tuple[str, Security | None]:
        try:
            return await asyncio.wait_for(self.discover(), self.start_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"the scheduler (rank 0) did not say where it listens within {self.start_timeout:g} s "
                f"({type(self).__name__}: {self.where()}); did it start?"
            ) from None

    def where(self) -> str:
        """Where the ranks meet, for messages."""
        return "in this process"

    async def _run_scheduler(self) -> None:
        security = cluster_security(self.security)
        options = dict(self.scheduler_options)
        if has_roles(security):  # the roles' guard first: the scheduler listens before it runs its preloads
            options = with_preloads(options, roles_guard(as_text=False), [], here=True)
        try:
            async with Scheduler(security=security, **options) as scheduler:
                await self.publish(scheduler.address, security)
                await scheduler.finished()
        finally:
            await self.retract()
        self.status = Status.closed

    async def _run_worker(self) -> None:
        address, security = await self._discovered()
        options = {"name": await self.rank(), **self.worker_options}
        async with self.worker_class(address, security=security, **options) as worker:
            await worker.finished()
        self.status = Status.closed

    async def _close(self) -> None:
        """The client's block has ended: shut the scheduler down, and with it the workers."""
        if self.role is Role.client and self.status == Status.running:
            self.status = Status.closing
            options = {"timeout": SHUTDOWN_TIMEOUT, **self.client_options}
            try:
                async with Client(
                    self.scheduler_address, security=self.security, asynchronous=True, **options
                ) as client:
                    await client.shutdown()
            except (OSError, TimeoutError):  # it had gone already (killed, or ended on its own): nothing to stop
                pass
        self.status = Status.closed

    def close(self):
        return self.sync(self._close)

    # ---- entering and leaving ----------------------------------------------

    def _leave_unless_client(self) -> None:
        """The scheduler's and workers' processes do not run the block: their part is over."""
        if self.role is not Role.client:
            raise SystemExit(0)

    def __await__(self):
        async def started():
            await self._start()
            return self

        return started().__await__()

    async def __aenter__(self):
        await self._start()
        self._leave_unless_client()
        return self

    async def __aexit__(self, *exc):
        await self._close()

    def __enter__(self):
        try:
            self.sync(self._start)
        except BaseException:
            self._loop_runner.stop()
            raise
        if self.role is not Role.client:
            self._loop_runner.stop()
        self._leave_unless_client()
        return self

    def __exit__(self, *exc):
        self.close()
        self._loop_runner.stop()

    def __repr__(self):
        return f"<{type(self).__name__} role={self.role and self.role.value} scheduler={self.scheduler_address}>"


class FileAllocation(Allocation):
    """Ranks that meet through a scheduler file on a shared directory, and
    the TLS material in a private file beside it (``<file>.tls``)."""

    def __init__(self, *args, scheduler_file: str | os.PathLike, **kwargs):
        super().__init__(*args, **kwargs)
        self.scheduler_file = pathlib.Path(scheduler_file)
        self.security_file = self.scheduler_file.with_name(self.scheduler_file.name + ".tls")

    def where(self) -> str:
        return f"its scheduler file {self.scheduler_file}"

    async def publish(self, address, security):
        if security is not None:  # before the address: whoever reads the address finds the material
            _write_private(self.security_file, json.dumps(security_contents(security)))
        _write_private(self.scheduler_file, json.dumps({"address": address}))

    async def discover(self):
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                address = json.loads(self.scheduler_file.read_text())["address"]
                security = None
                if address.startswith("tls://"):
                    security = Security(**json.loads(self.security_file.read_text()))
                return address, security
            await asyncio.sleep(0.1)

    async def retract(self):
        for path in (self.scheduler_file, self.security_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _write_private(path: pathlib.Path, text: str) -> None:
    """Write `text` to `path` whole or not at all, readable by this user alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_privately(path, text, f".{path.name}.")


def _environment_int(names: tuple[str, ...], what: str, launcher: str) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    raise RuntimeError(f"{what} is not in the environment ({', '.join(names)}): launch the script with {launcher}")


class SLURMAllocation(FileAllocation):
    """Inside a Slurm allocation, launched with ``srun``: ranks from
    ``SLURM_PROCID``; `scheduler_file` may name the job as ``{job_id}``
    (by default ``scheduler-{job_id}.json``, in the current directory,
    which must be shared by the allocation's nodes)."""

    def __init__(self, *args, scheduler_file: str | os.PathLike = "scheduler-{job_id}.json", **kwargs):
        job_id = _environment_int(("SLURM_JOB_ID",), "the Slurm job", "srun inside an allocation")
        super().__init__(*args, scheduler_file=str(scheduler_file).format(job_id=job_id), **kwargs)

    async def rank(self):
        return _environment_int(("SLURM_PROCID",), "the task's rank", "srun")

    async def size(self):
        return _environment_int(("SLURM_NTASKS",), "the number of tasks", "srun -n N")


class MPIAllocation(FileAllocation):
    """Launched with ``mpirun``/``mpiexec`` (Open MPI, MPICH, Intel MPI, a
    PMIx launcher): ranks from the launcher's environment, without importing MPI;
    for PBS and SGE allocations as well. `scheduler_file` is required and
    should be unique to the launch (a stale file would send the others to a
    scheduler that is gone)."""

    #: Each launcher's names for the rank in the whole launch and its size
    #: (never a node's local rank); a PMIx launcher gives the rank alone.
    RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
    SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")

    async def rank(self):
        return _environment_int(self.RANK_VARIABLES, "the process's rank", "mpirun")

    async def size(self):
        sizes = [os.environ[name] for name in self.SIZE_VARIABLES if name in os.environ]
        return int(sizes[0]) if sizes else None


class InProcessWorld:
    """Every rank as a task of one event loop, for trying code and for tests:
    ranks are handed out in the order the allocations start."""

    def __init__(self):
        self.ranks = 0
        self.published: asyncio.Future[tuple[str, Security | None]] | None = None

    def next_rank(self) -> int:
        self.ranks += 1
        return self.ranks - 1

    def announcement(self) -> asyncio.Future:
        if self.published is None:
            self.published = asyncio.get_running_loop().create_future()
        return self.published


class InProcessAllocation(Allocation):
    """A rank of an `InProcessWorld`."""

    def __init__(self, world: InProcessWorld, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.world = world
        self._rank: int | None = None

    async def rank(self):
        if self._rank is None:
            self._rank = self.world.next_rank()
        return self._rank

    async def publish(self, address, security):
        self.world.announcement().set_result((address, security))

    async def discover(self):
        return await asyncio.shield(self.world.announcement())
