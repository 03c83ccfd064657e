"""Where a cluster's Dask scheduler runs, and how its client reaches it.

A cluster asks its placement (`placement_for`, by ``scheduler_on``) for its
scheduler's options and its SpecCluster scheduler entry; the rest of the
cluster is the same wherever the scheduler runs. In this folder:

- here (`ClientPlacement`): the scheduler in the client's process, listening
  where the workers reach it;
- ``scheduler_on="login"`` (`LoginPlacement`, `login.py`): on the login node,
  started over the SSH connection (`login_main.py` is the program it runs
  there), reached through forwarded local ports; for clients the compute
  nodes cannot reach;
- ``detach=True`` as well (`detached.py`): that scheduler outlives the SSH
  connection (or the client's process); clients attach to it and keep it
  alive, and `reconnect.py` keeps a client's futures across reconnections;
- ``scheduler_on="job"`` (`JobPlacement`, `job.py`): in a batch job of its
  own, submitted with the cluster's job class, for sites that end long
  processes on login nodes; reached directly or through a forwarded port;
- ``detach=True`` with either of the last two: `session_keeper.py` is what
  the scheduler keeps of its session wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from distributed.scheduler import Scheduler
from distributed.security import Security
from distributed.utils import get_ip

from ..job import Job
from ..preload import roles_guard, scheduler_preloads, with_preloads
from ..runners import Runner
from ..ssh import SSHRunner
from ..tls_roles import has_roles
from .job import (
    INHERITED_OPTIONS,
    AttachedJob,
    JobScheduler,
    SchedulerJob,
    command_arguments,
    scheduler_job_class,
    scheduler_job_options,
    scheduler_words,
)
from .login import LoginNodeScheduler


class Placement:
    """Where the scheduler runs. Subclasses say which options they default
    and which SpecCluster scheduler entry starts it."""

    scheduler_on: ClassVar[str]
    #: Where the dashboard listens unless the options say.
    dashboard_address: ClassVar[str]

    def __init__(self, runner: Runner):
        self.runner = runner

    def scheduler_options(self, options: Mapping[str, Any], interface: str | None) -> dict:
        """`options` with this placement's defaults. The workers' interface
        is the scheduler's too, unless it is given its own host or interface."""
        options = {"dashboard_address": self.dashboard_address, **options}
        if "host" not in options and "interface" not in options and interface is not None:
            options["interface"] = interface
        return options

    def scheduler_spec(self, options: dict, security: Security | None, scheduler_cls: type) -> dict:
        """The SpecCluster entry that starts the scheduler with `options`."""
        raise NotImplementedError

    def unreachable_hint(self) -> str:
        """The usual cause when workers never connect, if this placement has one."""
        return ""


class ClientPlacement(Placement):
    """The scheduler in this process."""

    scheduler_on = "client"
    dashboard_address = ":8787"

    def scheduler_options(self, options, interface):
        options = super().scheduler_options(options, interface)
        if "host" not in options and "interface" not in options:
            # The address workers reach it at, rather than every interface of this machine.
            options["host"] = get_ip()
        return options

    def scheduler_spec(self, options, security, scheduler_cls):
        if has_roles(security):  # the roles' guard first: the scheduler listens before it runs its preloads
            options = with_preloads(options, roles_guard(as_text=False), [], here=True)
        return {"cls": scheduler_cls, "options": {**options, "security": security}}

    def unreachable_hint(self):
        if not isinstance(self.runner, SSHRunner):
            return ""
        return (
            " Compute nodes often cannot open connections to a client outside the cluster (NAT, "
            "firewalls): scheduler_on='login' runs the scheduler on the login node instead."
        )


class LoginPlacement(Placement):
    """The scheduler on the login node, started over the runner's SSH
    connection with the compute nodes' Python. `session` (its directory,
    idle timeout and cancel command) detaches it; `running` is the state of
    a detached one to attach to instead of starting one."""

    scheduler_on = "login"
    # On a shared login node a fixed port may be taken: any free one will do. It
    # listens on the login node's loopback, out of the cluster network's reach, and is forwarded.
    dashboard_address = "127.0.0.1:0"

    def __init__(self, runner, python: list[str], session: dict | None = None, running: dict | None = None):
        if not isinstance(runner, SSHRunner):
            raise ValueError("scheduler_on='login' starts the scheduler over SSH: give ssh= (or an SSHRunner)")
        super().__init__(runner)
        self.python = python
        self.session = session
        self.running = running

    def scheduler_spec(self, options, security, scheduler_cls):
        guard = roles_guard(as_text=True) if has_roles(security) else []
        remote = with_preloads(options, guard, scheduler_preloads(security is not None), here=False)
        return {
            "cls": LoginNodeScheduler,
            "options": {
                "runner": self.runner,
                "python": self.python,
                "options": remote,
                "security": security,
                "session": self.session,
                "running": self.running,
            },
        }


class JobPlacement(Placement):
    """The scheduler in a batch job of its own, submitted with the cluster's
    job class: the site's options of every job (account, prologue,
    directives; `job.INHERITED_OPTIONS`), the resources `scheduler_job`
    gives. `on_recorded` is told the job and the files it reads, for the
    cluster's record; `on_ended` why the job ended while the cluster ran.
    `session` (its directory, idle timeout and cancel command) detaches it,
    as on the login node; `attached` is the job of a detached one to take
    over instead of submitting one."""

    scheduler_on = "job"
    # On the compute node's network, as the workers' own dashboards are: a
    # forward from the login node reaches it there, where its loopback is out of reach.
    dashboard_address = ":0"

    def __init__(
        self,
        runner: Runner,
        template: Job,
        scheduler_job: Mapping[str, Any] | None,
        files_directory: str,
        private_directory: bool,
        poll_interval: float,
        on_recorded: Callable[[str | None, dict[str, str]], None],
        on_ended: Callable[[str], None],
        session: dict | None = None,
        attached: AttachedJob | None = None,
    ):
        super().__init__(runner)
        self.session = session
        self.attached = attached
        self.settings = scheduler_job_options(scheduler_job)
        self.template = template
        self.job_cls = scheduler_job_class(type(template))
        resources = {key: self.settings.get(key) for key in ("cores", "memory", "walltime", "queue")}
        self.job_options = {
            **{key: template.option(key) for key in INHERITED_OPTIONS},
            **{key: value for key, value in resources.items() if value is not None},
            "job_name": f"{template.job_name}-scheduler",
            "processes": 1,
            "arrays": False,
            "config_name": template.options.section,
        }
        self.files_directory = files_directory
        self.private_directory = private_directory
        self.poll_interval = poll_interval
        self.on_recorded = on_recorded
        self.on_ended = on_ended

    def make_job(self, options: dict, files: Mapping[str, str], scheduler_file: str, log_file: str) -> SchedulerJob:
        """The scheduler's job: running it with `options`, its TLS material from
        `files` (paths by `Security` field), writing its address to `scheduler_file`."""
        words = scheduler_words(self.template.python_words, options, files, scheduler_file, self.session)
        return self.job_cls(None, "scheduler", command=words, log_file=log_file, **self.job_options)

    def job_script(self, options: dict) -> str:
        """The script of the scheduler's job, with placeholders for the paths known once its files are written."""
        return self.make_job(options, {}, "SCHEDULER-FILE", "SCHEDULER-LOG").job_script()

    def scheduler_spec(self, options, security, scheduler_cls):
        if scheduler_cls is not Scheduler:
            raise ValueError(
                f"scheduler_cls={scheduler_cls.__name__}: with scheduler_on='job' the scheduler is distributed's "
                "own, started by its `dask scheduler` command in the job; drop scheduler_cls or place the "
                "scheduler elsewhere (scheduler_on='client')"
            )
        command_arguments(options)  # options the command cannot take fail here, not in the job
        self.job_script(options)  # and so do job options no script can carry
        return {
            "cls": JobScheduler,
            "options": {
                "runner": self.runner,
                "make_job": self.make_job,
                "options": options,
                "security": security,
                "directory": self.files_directory,
                "private_directory": self.private_directory,
                "start_timeout": self.settings["start_timeout"],
                "poll_interval": self.poll_interval,
                "on_recorded": self.on_recorded,
                "on_ended": self.on_ended,
                "session_directory": self.session["directory"] if self.session is not None else None,
                "attached": self.attached,
            },
        }


#: Each placement by its ``scheduler_on`` name.
PLACEMENTS: dict[str, type[Placement]] = {
    cls.scheduler_on: cls for cls in (ClientPlacement, LoginPlacement, JobPlacement)
}


def check_scheduler_on(value: str) -> str:
    if value not in PLACEMENTS:
        raise ValueError(f"scheduler_on must be {' or '.join(map(repr, PLACEMENTS))}, got {value!r}")
    return value
