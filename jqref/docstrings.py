"""The parameter documentation of every cluster class, written once.

`JobQueueCluster.__init_subclass__` appends it to each cluster class's own
summary, with the options its job class adds (`Job.parameter_docs`), so
``SLURMCluster?`` lists every keyword, as dask-jobqueue's classes do.
"""

from __future__ import annotations

import textwrap

JOB_PARAMETERS = """
cores : int
    Cores per job (required; or ``cores`` in the config section).
memory : str
    Memory per job, e.g. ``"16 GiB"`` (required; or ``memory`` in the config section).
processes : int
    Dask worker processes per job; by default distributed's rule: one per
    core up to 4 cores, then about ``sqrt(cores)``.
queue : str
    The queue or partition to submit to.
account : str
    The account or project charged (``project`` is dask-jobqueue's older name).
walltime : str
    The jobs' time limit, e.g. ``"01:30:00"``.
interface : str
    Network interface of the workers, and of the scheduler unless
    ``scheduler_options`` names its own ``host`` or ``interface``.
nanny : bool
    Whether workers run under a nanny (default True).
protocol : str
    Protocol of the Dask connections, e.g. ``"tcp://"``.
death_timeout : float or str
    How long a worker waits for a lost scheduler before it stops.
local_directory : str
    The workers' scratch directory; ``$NAME``, ``${NAME}`` and a leading
    ``~`` expand in the job (``"$TMPDIR"``).
worker_command : str
    Module started with ``python -m`` (default ``distributed.cli.dask_worker``).
worker_extra_args : list of str
    More arguments of the worker command, split into words as a shell would.
job_extra_directives : list of str
    More directives for the batch system, each a line's text after the prefix.
job_directives_skip : list of str
    Generated directive lines containing any of these are left out (the
    ``job_extra_directives`` are always kept).
job_script_prologue : list of str
    Shell lines run before the workers start (``module load``, ``source``).
log_directory : str
    Where the batch system writes the jobs' output; made if missing.
shebang : str
    The job script's first line (default ``#!/usr/bin/env bash``).
python : str
    The compute nodes' Python (default: this one); required with ``ssh=``.
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
    Submit the jobs of one ``scale()`` as one array where the batch system
    has arrays (default True); ``max_array_size`` bounds an array.
"""

CLUSTER_PARAMETERS = """
n_workers : int
    Workers to start with (whole jobs' worth).
name : str
    The cluster's name; workers are named ``<name>-<n>`` (default: the class name).
security : Security or bool
    TLS for every Dask connection; ``True`` makes a certificate for this cluster.
scheduler_options : dict
    Keyword arguments of the Dask scheduler (``host``, ``port``,
    ``dashboard_address``, ``interface``); given, they replace the config's
    ``scheduler-options``.
scheduler_cls : type
    The scheduler class (default ``distributed.Scheduler``).
shared_temp_directory : str
    A directory the scheduler and the jobs share.
ssh : str
    Run the batch commands on a login node, ``"[user@]host"`` or an alias
    from ``~/.ssh/config``; or ``runner=`` an `SSHRunner`.
scheduler_on : str
    ``"client"`` (this process, the default) or ``"login"`` (the login node,
    reached over the SSH connection, for clients behind NAT).
detach : bool
    With ``scheduler_on="login"``: the scheduler outlives the SSH connection
    (``attach``), for ``idle_timeout`` without a client.
poll_interval : float or str
    How often the batch system is asked about the jobs (default 5 s).
max_jobs : int
    Never more jobs than this, queued or running.
silence_logs : str
    Log level of distributed's loggers in this process (default ``"warning"``).
asynchronous : bool
    Whether the cluster is used with ``await``.
loop : IOLoop
    The event loop to run on.
"""


def cluster_docstring(summary: str, scheduler: str, config_name: str, scheduler_parameters: str = "") -> str:
    """`summary` followed by every parameter; `scheduler_parameters` are the
    job class's own, under a heading naming `scheduler`."""
    config = (
        f"Each job option can also be set for {scheduler} jobs in the dask config, section "
        f"``jobqueue.{config_name}`` (or ``jqref.{config_name}``, which wins), with dashes for underscores."
    )
    parts = [
        textwrap.dedent(summary).strip(),
        "",
        *textwrap.wrap(config, 78),
        "",
        "Parameters",
        "----------",
        JOB_PARAMETERS.strip(),
        CLUSTER_PARAMETERS.strip(),
    ]
    if scheduler_parameters.strip():
        heading = f"Options of {scheduler} jobs"
        parts += ["", heading, "-" * len(heading), textwrap.dedent(scheduler_parameters).strip()]
    return "\n".join(parts) + "\n"
