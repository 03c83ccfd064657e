"""The parameter documentation of every cluster class, written once.

`JobQueueCluster.__init_subclass__` appends it to each cluster class's own
summary, with the options its job class adds (`Job.parameter_docs`), so
``SLURMCluster?`` lists every keyword, as dask-jobqueue's classes do. The
documentation site shows the same text (docs/_hooks composes it from the
source the same way; tests/unit/test_docs_options.py checks both, and that
every keyword a cluster accepts is listed).
"""

from __future__ import annotations

import re
import textwrap

JOB_PARAMETERS = """
cores : int
    Cores per job (required; or ``cores`` in the config section).
memory : str
    Memory per job, e.g. ``"16 GiB"`` (required; or ``memory`` in the config
    section). At least 1 MiB; a number alone is bytes.
processes : int
    Dask worker processes per job, which share its cores as threads. By
    default distributed's rule: one per core up to 4 cores, then the smallest
    divisor of ``cores`` that is at least its square root (8 cores: 4 workers
    of 2 threads).
queue : str
    The queue or partition to submit to (SLURM ``-p``, SGE and PBS ``-q``;
    HTCondor has no queues and refuses one).
account : str
    The account or project charged (SLURM and PBS ``-A``, SGE ``-P``,
    HTCondor ``accounting_group``).
walltime : str
    The jobs' time limit, e.g. ``"01:30:00"`` (default 30 minutes; none on
    HTCondor): ``[[HH:]MM:]SS`` or seconds, and on SLURM also
    ``D-HH:MM:SS`` (a number alone is minutes there). ``None`` in the config
    asks for no limit.
interface : str
    Network interface of the workers, and of the scheduler unless
    ``scheduler_options`` names its own ``host`` or ``interface``.
nanny : bool
    Whether workers run under a nanny (default True).
protocol : str
    Protocol of the Dask connections, e.g. ``"tcp://"``; with TLS (the
    default, see ``security``) the connections use ``tls://``.
death_timeout : float or str
    How long a worker waits for a lost scheduler before it stops (default 60 s).
local_directory : str
    The workers' scratch directory; ``$NAME``, ``${NAME}`` and a leading
    ``~`` expand in the job (``"$TMPDIR"``).
worker_command : str
    Module started with ``python -m`` (default ``distributed.cli.dask_worker``).
worker_extra_args : list of str
    More arguments of the worker command, each split into words as a shell
    would (``"--resources GPU=2"`` is two).
job_extra_directives : list of str
    More directives for the batch system, each a line's text after the prefix.
job_directives_skip : list of str
    Generated directive lines containing any of these are left out (the
    ``job_extra_directives`` are always kept).
job_script_prologue : list of str
    Shell lines run before the workers start (``module load``, ``source``).
job_script_epilogue : list of str
    Shell lines run after the workers have ended (dask-jobqueue's main
    branch has them too).
log_directory : str
    Where the batch system writes the jobs' output, made if missing (where
    the batch commands run: on the login node over SSH). Default none: the
    job script names no place, and the batch system's default applies.
shebang : str
    The job script's first line (default ``#!/usr/bin/env bash``).
python : str
    The compute nodes' Python (default: this one), with the same Python
    version and ``distributed`` as this process; required with ``ssh=``.
job_name : str
    The name the batch system shows (config key ``name``; default ``dask-worker``).
config_name : str
    The dask config section to read (``jobqueue.<config_name>``), instead of
    the scheduler's own.
submit_command_extra, cancel_command_extra : list of str
    More arguments for the submit and cancel commands.
cancel_grace_period : float or str
    From the SIGTERM workers close on to the hard cancel (default 30 s).
arrays : bool
    Submit the jobs of one ``scale()`` or adapt step as one array where the
    batch system has arrays (SLURM, SGE, HTCondor; default True). False
    submits each job on its own, for sites that forbid arrays.
max_array_size : int
    Elements per array at most; larger batches are split. Default: the
    site's own limit where jqref can read it (Slurm's ``MaxArraySize``),
    else 1000.
lifetime_margin : float or str
    With a ``walltime``, the workers retire this long before it (default
    5 minutes, at most a fifth of the walltime): they get ``--lifetime``
    (walltime less the margin) and ``--lifetime-stagger`` (half the
    margin), so workers started together leave one by one, handing their
    data to the others, and are replaced before the batch system kills the job. 0 turns this off; a
    ``--lifetime`` in ``worker_extra_args`` replaces it.
"""

CLUSTER_PARAMETERS = """
n_workers : int
    Workers to start with (whole jobs' worth).
name : str
    The cluster's name; workers are named ``<name>-<n>`` (default: the class name).
security : Security or bool
    TLS for every Dask connection. By default (``None``, or ``True``) a CA,
    keys and certificates made for this cluster alone, with roles: a
    worker's certificate cannot act as a client. ``False`` turns TLS off,
    with an `InsecureSchedulerWarning` (refused with ``detach=True``); a
    ``distributed.Security`` of your own (paths or contents) is used instead.
shared_temp_directory : str
    Where the files the jobs read are written, each private (0600), on the
    machine where the batch commands run: the workers' TLS key and
    certificate, and jqref's code the workers load (``--preload``). A
    directory the compute nodes share. Default ``~/.jqref/credentials``
    (0700; a detached session's own directory); the files are removed when
    the cluster closes.
scheduler_options : dict
    Keyword arguments of the Dask scheduler (``host``, ``port``,
    ``dashboard_address``, ``interface``, ...); given, they replace the
    config's ``scheduler-options``. Without ``host`` or ``interface``, a
    scheduler in this process listens on the address of this machine's
    default route (not on every interface).
scheduler_cls : type
    The scheduler class (default ``distributed.Scheduler``).
ssh : str
    Run the batch commands on a login node, ``"[user@]host[:port]"`` or an
    alias from ``~/.ssh/config`` (``ProxyJump`` included); needs ``python``.
runner : Runner
    What runs the batch commands, instead of ``ssh``: an `SSHRunner` with
    options of your own, or a `LocalRunner` (the default: this machine).
scheduler_on : str
    ``"client"`` (this process, the default), ``"login"`` (the login node,
    reached over the SSH connection, for clients the compute nodes cannot
    reach) or ``"job"`` (a batch job of its own, for sites that end long
    processes on login nodes; reached directly, or else through a port
    forwarded over the SSH connection).
scheduler_job : dict
    With ``scheduler_on="job"``, the scheduler's job: ``cores`` (default 1),
    ``memory`` (``"2GiB"``), ``walltime`` and ``queue`` (the workers'), and
    ``start_timeout`` (``"5 minutes"``): how long to wait for it to listen,
    queueing included. The job takes the workers' account, prologue and
    extra directives; its script runs distributed's ``dask scheduler``
    command. If it ends while the cluster runs, the cluster cancels its
    workers and closes.
detach : bool
    With ``scheduler_on="login"`` or ``"job"``: the scheduler outlives the
    SSH connection and this process, and another process can take the
    cluster over (`attach`), until no client has been in touch for
    ``idle_timeout`` (default False).
idle_timeout : float or str
    How long a detached scheduler waits without a client, or a cluster
    object in touch with it, before it cancels its jobs and ends (default
    30 minutes; at least 15 s).
poll_interval : float or str
    How often the batch system is asked about the jobs (default 5 s; at
    least 100 ms).
max_jobs : int
    Never more jobs than this, queued or running, whatever ``scale`` or
    ``adapt`` ask for (default: no limit).
silence_logs : str
    Log level of distributed's loggers in this process (default ``"warning"``).
asynchronous : bool
    Whether the cluster is used with ``await``.
loop : IOLoop
    The event loop to run on.
job_cls : type
    The job class (a `Job` subclass); each scheduler's cluster class has
    its own (``SLURMCluster``'s is `SLURMJob`).
host, dashboard_address : str
    Refused, with a message saying so: give them in ``scheduler_options``.
"""

#: What each scheduler reads under dask-jobqueue's older names, which its users' code may still pass.
OLDER_NAMES = {
    "slurm": "``project`` (``account``)",
    "pbs": "``project`` (``account``)",
}
#: dask-jobqueue's names jqref reads without a warning, per scheduler.
OTHER_NAMES = {
    "sge": "``project`` (for ``account``: SGE's ``-P``)",
    "local": "``project`` (for ``account``; a local job is charged to no one)",
}
#: Options of a scheduler whose job class documents none of its own.
SECTION_PARAMETERS = {
    "local": """
    resource_spec : str
        Accepted for dask-jobqueue's sake: local jobs request nothing.
    """,
}

#: The first line of a parameter's entry: its name(s), a colon, its type.
_ENTRY = re.compile(r"^(?P<names>[A-Za-z_][A-Za-z0-9_, ]*) :")


def _entries(text: str) -> dict[str, str]:
    """A numpy-style parameter list, entry by entry, keyed by the names its first line gives."""
    entries: dict[str, str] = {}
    name = None
    for line in textwrap.dedent(text).strip().splitlines():
        match = _ENTRY.match(line)
        if match:
            name = match["names"]
            entries[name] = line
        elif name is not None:
            entries[name] += "\n" + line
    return entries


def cluster_docstring(summary: str, scheduler: str, config_name: str, scheduler_parameters: str = "") -> str:
    """`summary` followed by every parameter: the job's, where the job class's
    own (`scheduler_parameters`) replace a common one of the same name or
    follow them, then the cluster's."""
    scheduler_parameters = scheduler_parameters or SECTION_PARAMETERS.get(config_name, "")
    config = (
        f"Each job option can also be set for {scheduler} jobs in the dask config, section "
        f"``jobqueue.{config_name}`` (or ``jqref.{config_name}``, which wins), with dashes for underscores."
    )
    deprecated = [
        "``env_extra`` (for ``job_script_prologue``)",
        "``extra`` (``worker_extra_args``)",
        "``header_skip`` (``job_directives_skip``)",
        "``job_extra`` (``job_extra_directives``)",
        *([OLDER_NAMES[config_name]] if config_name in OLDER_NAMES else []),
    ]
    renamed = (
        "dask-jobqueue 0.9's deprecated names are read too, with a FutureWarning naming the new one: "
        + ", ".join(deprecated)
        + "."
        + (f" dask-jobqueue's {OTHER_NAMES[config_name]} is read as well." if config_name in OTHER_NAMES else "")
    )
    job = _entries(JOB_PARAMETERS)
    own = _entries(scheduler_parameters)
    parameters = [own.pop(name, entry) for name, entry in job.items()] + list(own.values())
    parameters += list(_entries(CLUSTER_PARAMETERS).values())
    return (
        "\n".join(
            [
                textwrap.dedent(summary).strip(),
                "",
                *textwrap.wrap(config, 78),
                *textwrap.wrap(renamed, 78),
                "",
                "Parameters",
                "----------",
                *parameters,
            ]
        )
        + "\n"
    )
