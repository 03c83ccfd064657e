"""Measurements for the SLURM benchmark, one kind per subcommand.

Runs where the client runs: on the testbed's login node for the local-mode
contenders (jqref local, dask-jobqueue, the bare floor), on this machine for
jqref's SSH mode and the SSH round trips. `bench_slurm.py` drives it and
collects what it prints: one line starting with ``BENCH-JSON `` holding the
results; everything else is progress on stderr.

Every wait has a deadline; a measurement that misses it is recorded as
failed (``"ok": false``) and the run goes on.

Subcommands:
  workers  time from scale(jobs=J) to N workers connected, for one contender
  queue    batch commands per polling interval and submit/close times for 1, 10, 100 jobs
  rtt      SSH command round trip: jqref's persistent connection vs a fresh ssh per command
  overhead client-side time per job: scale(jobs=100) against a batch system answering at once
  startup  on a compute node: Python start, `import distributed`, jqref's version check
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid

#: The compute nodes' interpreter (the image's environment), for every contender.
PYTHON = "/opt/jqref/bin/python3"
#: The shared home: job output and the jobs' start stamps go here ($BENCH_DIR
#: elsewhere: the unit tests' smoke runs against a stand-in SLURM).
BENCH_DIR = os.environ.get("BENCH_DIR", "/home/dask/jqref-bench")
LOGS = f"{BENCH_DIR}/logs"
STAMPS = f"{BENCH_DIR}/stamps"
DEADLINE = float(os.environ.get("BENCH_DEADLINE", 150))

#: Job shapes, identical for every contender. The testbed has 4 schedulable
#: cores (2 nodes x 2) and no oversubscription, so at most 4 one-core jobs
#: run at once: N=8 workers are 4 one-core jobs of 2 worker processes each.
SHAPES = {
    1: dict(jobs=1, cores=1, processes=1, job_cpu=1, memory="512MiB"),
    4: dict(jobs=4, cores=1, processes=1, job_cpu=1, memory="512MiB"),
    8: dict(jobs=4, cores=2, processes=2, job_cpu=1, memory="1GiB"),
    # On the scale flavour of the testbed only (SCALE=1: nodes advertise 32 CPUs).
    # 64 workers starting at once on 2 real cores take about a minute, longer
    # than the usual death-timeout: a worker would give up before it connects.
    16: dict(jobs=16, cores=1, processes=1, job_cpu=1, memory="512MiB", death_timeout=240),
    64: dict(jobs=64, cores=1, processes=1, job_cpu=1, memory="512MiB", death_timeout=240),
}
#: An array element's id as jqref names it (123_4), a plain job's id otherwise:
#: the key of a job's start stamp.
JQREF_JOB_ID = '"${SLURM_ARRAY_TASK_ID:+${SLURM_ARRAY_JOB_ID}_}${SLURM_ARRAY_TASK_ID:-$SLURM_JOB_ID}"'
#: jqref contenders, and the options that make them differ.
JQREF_VARIANTS = {"jqref-local": {}, "jqref-ssh": {}, "jqref-noarray": {"arrays": False}}
COMMON = dict(walltime="00:30:00", python=PYTHON, nanny=True, death_timeout=30, log_directory=LOGS)


def log(*args):
    print(f"[measure {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def emit(obj):
    print("BENCH-JSON " + json.dumps(obj), flush=True)
    sys.stderr.flush()
    # Leave without jqref's at-exit handler: every measurement has already
    # closed its clusters and emptied the queue itself, and after a close()
    # that raised, that handler retries it for up to 30 s per cluster.
    os._exit(0)


# ---- where helper commands run ------------------------------------------------


class Shell:
    """Helper commands (queue checks, stamp files) on the login node: directly in
    local mode, over the contender's own SSH runner in SSH mode."""

    def __init__(self, runner=None):
        self.runner = runner

    def run(self, argv, stdin=None, timeout=60):
        if self.runner is None:
            p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
            return p.returncode, p.stdout, p.stderr
        for attempt in range(3):  # the benchmark's own checks ride out a dropped connection
            try:
                r = (
                    asyncio.run(self.runner.run(argv, stdin=stdin, timeout=timeout))
                    if stdin is not None
                    else self.runner.run_blocking(argv, timeout=timeout)
                )
                return r.returncode, r.stdout, r.stderr
            except Exception as e:
                if attempt == 2:
                    raise
                log(f"helper command {argv[0]} failed ({e!r}); again")
                time.sleep(1)

    def active_jobs(self):
        code, out, err = self.run(["squeue", "--noheader", "--user=dask", "--format=%i", "--states=PD,R,CG,CF,S,RQ"])
        if code != 0:
            raise RuntimeError(f"squeue failed: {err}")
        return out.split()

    def drain(self, timeout=60.0):
        """Wait until none of the user's jobs is pending, running or completing.
        Returns the jobs still there at the deadline (then cancelled here)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.active_jobs()
            if not left:
                return []
            if time.monotonic() > deadline:
                log(f"queue not empty after {timeout:g}s: {left}; cancelling")
                self.run(["scancel", "--user=dask"])
                self.drain(30)
                return left
            time.sleep(0.25)

    def stamps(self, directory):
        """Job start stamps written by the jobs: {key: epoch seconds}."""
        _, out, _ = self.run(["grep", "-r", "", directory])
        found = {}
        for line in out.splitlines():
            path, _, value = line.partition(":")
            try:
                found[os.path.basename(path)] = float(value)
            except ValueError:
                pass
        return found


class CountingRunner:
    """Wraps a jqref runner and records every command it runs."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []  # (argv[0], start, seconds)

    @staticmethod
    def label(argv):
        # Status polls (squeue --jobs=...) and look-ups by tag after a lost
        # connection (squeue --name=...) are counted apart.
        if argv[0] == "squeue" and any(str(a).startswith("--name=") for a in argv):
            return "squeue (find by tag)"
        return str(argv[0])

    async def run(self, argv, *, stdin=None, timeout=None):
        t = time.time()
        try:
            return await self.inner.run(argv, stdin=stdin, timeout=timeout)
        finally:
            self.calls.append((self.label(argv), t, time.time() - t))

    def run_blocking(self, argv, *, timeout=None):
        t = time.time()
        try:
            return self.inner.run_blocking(argv, timeout=timeout)
        finally:
            self.calls.append((self.label(argv), t, time.time() - t))

    def script_file(self, text):
        return self.inner.script_file(text)

    async def close(self):
        await self.inner.close()

    def __getattr__(self, name):
        # Everything else a runner offers (writing the workers' credentials,
        # describe(), destination, port forwards, ...) is the inner runner's:
        # only commands are counted.
        if name == "inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def count(self, since=0.0, until=float("inf")):
        counts = {}
        for name, t, _ in self.calls:
            if since <= t < until:
                counts[name] = counts.get(name, 0) + 1
        return counts


def instant_runner(answer):
    """A jqref runner for which every batch command succeeds at once with
    `answer(argv)` as its output; everything else (files) is `LocalRunner`'s."""
    from jqref import LocalRunner
    from jqref.runners import CommandResult

    class Instant(LocalRunner):
        async def run(self, argv, *, stdin=None, timeout=None):
            return CommandResult(tuple(argv), 0, answer(argv), "")

        def run_blocking(self, argv, *, timeout=None):
            return CommandResult(tuple(argv), 0, answer(argv), "")

    return Instant()


def ssh_runner():
    from jqref import SSHRunner

    return SSHRunner(os.environ["JQREF_SSH_DESTINATION"], config_file=os.environ["JQREF_SSH_CONFIG"])


# ---- contenders -----------------------------------------------------------------


def stamp_line(directory, key='"$SLURM_JOB_ID"'):
    # A bash builtin (no fork): when the job's script began, on the shared clock.
    return f"printf '%s\\n' \"$EPOCHREALTIME\" > {directory}/{key}"


def arrivals_plugin():
    """A scheduler plugin recording when each worker connected (epoch seconds)
    and its name, in its `times` dict keyed by address."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Arrivals(SchedulerPlugin):
        name = "bench-arrivals"

        def __init__(self):
            self.times = {}

        def add_worker(self, scheduler=None, worker=None, **kwargs):
            ws = scheduler.workers.get(worker)
            self.times[worker] = (time.time(), str(ws.name) if ws is not None else worker)

    return Arrivals()


def make_cluster(contender, shape, job_name, stamp_dir, runner, scheduler_host, poll_interval):
    options = dict(
        COMMON,
        cores=shape["cores"],
        memory=shape["memory"],
        processes=shape["processes"],
        job_cpu=shape["job_cpu"],
        job_name=job_name,
        death_timeout=shape.get("death_timeout", COMMON["death_timeout"]),
    )
    if contender == "djq":
        options["job_script_prologue"] = [stamp_line(stamp_dir)]
        from dask_jobqueue import SLURMCluster

        return SLURMCluster(**options, scheduler_options={"dashboard_address": ":0"})
    from jqref import SLURMCluster

    scheduler_options = {"dashboard_address": ":0", **({"host": scheduler_host} if scheduler_host else {})}
    return SLURMCluster(
        **options,
        runner=runner,
        poll_interval=poll_interval,
        scheduler_options=scheduler_options,
        job_script_prologue=[stamp_line(stamp_dir, JQREF_JOB_ID)],
        **JQREF_VARIANTS[contender],
    )


class FloorCluster:
    """The floor: no cluster library. A scheduler in this process, and the same
    job shape submitted as one `sbatch --array` whose script is only the start
    stamp and the worker command (what every contender ends up running)."""

    def __init__(self, shape, job_name, stamp_dir, shell, nanny=True):
        from distributed import Scheduler
        from distributed.deploy.spec import SpecCluster

        self.cluster = SpecCluster(
            scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}, workers={}, silence_logs="warning"
        )
        self.scheduler = self.cluster.scheduler
        self.shape, self.job_name, self.stamp_dir, self.shell = shape, job_name, stamp_dir, shell
        self.nanny = nanny
        self.job_id = None
        self.workers = {}

    def script(self):
        return floor_script(self.shape, self.job_name, self.stamp_dir, self.scheduler.address, self.nanny)

    def scale(self, jobs):
        code, out, err = self.shell.run(["sbatch", "--parsable", f"--array=0-{jobs - 1}"], stdin=self.script())
        if code != 0:
            raise RuntimeError(f"sbatch failed: {err}")
        self.job_id = out.strip().split(";")[0]
        # Array tasks get their own job ids once they start; map them later.
        self.workers = {f"floor-{i}": None for i in range(jobs)}

    def task_job_ids(self):
        _, out, _ = self.shell.run(["squeue", "--noheader", "--states=all", "--format=%A %K", f"--jobs={self.job_id}"])
        pairs = (line.split() for line in out.splitlines())
        return {f"floor-{task}": job for job, task in (pair for pair in pairs if len(pair) == 2)}

    def close(self):
        if self.job_id:
            self.shell.run(["scancel", self.job_id])
        self.cluster.close()


def floor_script(shape, job_name, stamp_dir, address, nanny=True):
    """The floor's job script: the start stamp and the worker command, nothing else."""
    from dask.utils import parse_bytes

    s = shape
    mem_mib = -(-parse_bytes(s["memory"]) // 2**20)
    worker = [
        PYTHON,
        "-m",
        "distributed.cli.dask_worker",
        address,
        "--nthreads",
        str(s["cores"] // s["processes"]),
        "--memory-limit",
        str(mem_mib * 2**20 // s["processes"]),
    ]
    if s["processes"] > 1:
        worker += ["--nworkers", str(s["processes"])]
    worker += [
        "--nanny" if nanny else "--no-nanny",
        "--death-timeout",
        str(s.get("death_timeout", COMMON["death_timeout"])),
    ]
    return (
        "\n".join(
            [
                "#!/usr/bin/env bash",
                f"#SBATCH --job-name={job_name}",
                f"#SBATCH --output={LOGS}/{job_name}-%A_%a.out",
                "#SBATCH --ntasks=1",
                f"#SBATCH --cpus-per-task={s['job_cpu']}",
                f"#SBATCH --mem={mem_mib}M",
                f"#SBATCH --time={COMMON['walltime']}",
                stamp_line(stamp_dir, '"$SLURM_JOB_ID"'),
                "exec " + shlex.join(worker) + ' --name "floor-$SLURM_ARRAY_TASK_ID"',
            ]
        )
        + "\n"
    )


def job_of(worker_name, processes):
    return worker_name.rsplit("-", 1)[0] if processes > 1 else worker_name


def measure_once(contender, n, run_id, shell, runner, scheduler_host, poll_interval):
    shape = SHAPES[n]
    job_name = f"b{contender.replace('-', '')[:8]}{n}-{run_id}"
    stamp_dir = f"{STAMPS}/{job_name}"
    shell.run(["mkdir", "-p", stamp_dir, LOGS])
    counting = CountingRunner(runner) if runner is not None else None
    result = dict(contender=contender, n=n, jobs=shape["jobs"], ok=False, load1=os.getloadavg()[0])
    t_create = time.time()
    if contender.startswith("floor"):
        # floor-nonanny: the worker alone, without the nanny process in front
        # of it (one worker per job only: dask-worker needs a nanny for more).
        cluster = FloorCluster(shape, job_name, stamp_dir, shell, nanny=contender == "floor")
        scheduler = cluster.scheduler
    else:
        cluster = make_cluster(contender, shape, job_name, stamp_dir, counting, scheduler_host, poll_interval)
        scheduler = cluster.scheduler
    result["create_s"] = time.time() - t_create
    arrivals = arrivals_plugin()
    scheduler.add_plugin(arrivals)
    try:
        t0 = time.time()
        if contender.startswith("floor"):
            cluster.scale(shape["jobs"])
        else:
            cluster.scale(jobs=shape["jobs"])
        t_submitted = time.time() if contender.startswith("floor") else None
        deadline = time.monotonic() + max(DEADLINE, shape.get("death_timeout", 0))
        while len(arrivals.times) < n and time.monotonic() < deadline:
            if (
                t_submitted is None
                and len(cluster.workers) >= shape["jobs"]
                and all(getattr(j, "job_id", None) for j in cluster.workers.values())
            ):
                t_submitted = time.time()
            time.sleep(0.005)
        if t_submitted is None and len(cluster.workers) >= shape["jobs"]:
            t_submitted = time.time()
        result["ok"] = len(arrivals.times) >= n
        connects = sorted(t for t, _ in arrivals.times.values())
        result["time_to_workers_s"] = connects[n - 1] - t0 if result["ok"] else None
        result["first_worker_s"] = connects[0] - t0 if connects else None
        result["submitted_s"] = t_submitted - t0 if t_submitted else None
        # Which job each worker belongs to, then job start stamps per job.
        if contender.startswith("floor"):
            names_to_job = cluster.task_job_ids()
        else:
            names_to_job = {name: getattr(job, "job_id", None) for name, job in cluster.workers.items()}
        stamps = shell.stamps(stamp_dir)
        starts = [stamps[j] - t0 for j in names_to_job.values() if j in stamps]
        result["job_start_s"] = sorted(starts)
        worker_start = []
        for t, name in arrivals.times.values():
            job = names_to_job.get(job_of(name, shape["processes"]))
            if job in stamps:
                worker_start.append(t - stamps[job])
        result["worker_start_s"] = sorted(worker_start)
        if counting is not None:
            result["commands_until_workers"] = counting.count(until=t0 + (result["time_to_workers_s"] or DEADLINE))
    finally:
        t_close = time.time()
        try:
            cluster.close()
        except Exception as e:  # recorded: a benchmark goes on
            result["close_error"] = repr(e)
        result["close_s"] = time.time() - t_close
        result["left_behind"] = shell.drain()
        result["drain_s"] = time.time() - t_close
        shell.run(["rm", "-rf", stamp_dir])
    if not result["ok"]:
        log(f"{contender} N={n}: only {len(arrivals.times)} of {n} workers within {DEADLINE:g}s")
    return result


def cmd_workers(args):
    runner = None
    scheduler_host = None
    if args.contender == "jqref-ssh":
        runner = ssh_runner()
        t = time.time()
        runner.run_blocking(["true"]).check()  # the connection is opened here, outside the timing
        log(f"SSH connection opened in {time.time() - t:.2f}s")
        scheduler_host = os.environ["JQREF_SCHEDULER_HOST"]
    elif args.contender in ("jqref-local", "jqref-noarray"):
        from jqref import LocalRunner

        runner = LocalRunner()
    # In SSH mode the benchmark's own checks use a connection of their own.
    shell = Shell(ssh_runner() if args.contender == "jqref-ssh" else None)
    shell.drain()
    results = []
    for n in args.n:
        r = measure_once(
            args.contender, n, f"{args.round}{uuid.uuid4().hex[:4]}", shell, runner, scheduler_host, args.poll_interval
        )
        r["round"] = args.round
        r["jqref_from"] = getattr(sys.modules.get("jqref"), "__file__", None)
        log(f"{args.contender} N={n}: {r.get('time_to_workers_s')}")
        results.append(r)
    if args.contender == "jqref-ssh":
        asyncio.run(runner.close())
    emit(results)


# ---- queue commands per polling interval ------------------------------------------


def cmd_queue(args):
    """jqref: which batch commands it issues while k jobs sit in the queue, per
    polling interval; and for every contender the time to submit k jobs (all
    sbatch answered) and to close (cancel them all). Jobs are held back with
    --begin so nothing runs and the machine stays quiet."""
    shape = SHAPES[1]
    hold = ["--begin=now+1hour"]
    results = []
    runner = None
    if args.contender == "jqref-ssh":
        runner = ssh_runner()
        runner.run_blocking(["true"]).check()
    elif args.contender in ("jqref-local", "jqref-noarray"):
        from jqref import LocalRunner

        runner = LocalRunner()
    shell = Shell(ssh_runner() if args.contender == "jqref-ssh" else None)
    shell.drain()
    calls = []
    if args.contender == "djq":
        import dask_jobqueue.core as djq_core

        original = djq_core.Job._call

        async def counted(cmd, **kw):
            t = time.time()
            try:
                return await original(cmd, **kw)
            finally:
                calls.append((cmd[0], t, time.time() - t))

        djq_core.Job._call = staticmethod(counted)
    for k, repeat in [(k, i) for k in args.k for i in range(args.repeat)]:
        job_name = f"bq{args.contender.replace('-', '')[:6]}{k}-{uuid.uuid4().hex[:4]}"
        counting = CountingRunner(runner) if runner is not None else None
        options = dict(
            COMMON,
            cores=shape["cores"],
            memory=shape["memory"],
            processes=1,
            job_name=job_name,
            job_extra_directives=hold,
        )
        if args.contender == "djq":
            from dask_jobqueue import SLURMCluster

            cluster = SLURMCluster(**options, scheduler_options={"dashboard_address": ":0"})
        else:
            from jqref import SLURMCluster

            cluster = SLURMCluster(
                **options,
                runner=counting,
                scheduler_options={"dashboard_address": ":0"},
                poll_interval=args.poll_interval,
                **JQREF_VARIANTS[args.contender],
            )
        r = dict(contender=args.contender, k=k, repeat=repeat, poll_interval_s=args.poll_interval)
        try:
            queue_once(args, k, repeat, cluster, counting, calls, r, shell)
        except Exception as e:  # recorded; the benchmark goes on
            r["error"] = repr(e)
            log(f"queue {args.contender} k={k} #{repeat} failed: {e!r}")
            with contextlib.suppress(Exception):
                cluster.close()
            r.setdefault("left_behind", shell.drain(15))
        r.setdefault("submit_s", None)
        r.setdefault("submit_failures", None)
        r.setdefault("close_s", None)
        log(
            f"queue {args.contender} k={k} #{repeat}: submit {r['submit_s']} s ({r['submit_failures']} failed), "
            f"{r.get('status_commands_per_interval')} polls/interval, close {r['close_s']} s, "
            f"left behind {r.get('left_behind')}"
        )
        results.append(r)
    if args.contender == "jqref-ssh":
        asyncio.run(runner.close())
    emit(results)


def queue_once(args, k, repeat, cluster, counting, calls, r, shell):
    """One `scale(jobs=k)` and `close()`; counts commands on the first repetition."""

    def counted(since, until=float("inf")):
        if counting is not None:
            return counting.count(since, until)
        found = {}
        for name, t, _ in calls:
            if since <= t < until:
                found[name] = found.get(name, 0) + 1
        return found

    try:
        t0 = time.time()
        cluster.scale(jobs=k)
        deadline = time.monotonic() + DEADLINE
        # SpecCluster fills cluster.workers once every job's start() has
        # returned or raised: then count the jobs that got an id.
        while time.monotonic() < deadline and len(cluster.workers) < k:
            time.sleep(0.005)
        r["submit_s"] = time.time() - t0
        r["submitted"] = sum(1 for j in cluster.workers.values() if getattr(j, "job_id", None))
        r["submit_failures"] = k - r["submitted"]
        if repeat == 0:
            time.sleep(args.poll_interval * 0.5)  # off the poll boundary
            t1 = time.time()
            time.sleep(args.window)
            t2 = time.time()
            in_window = counted(t1, t2)
            r["commands_during_submit"] = counted(t0, t1)
            r["window_s"] = t2 - t1
            r["commands_in_window"] = in_window
            r["status_commands_per_interval"] = in_window.get("squeue", 0) / ((t2 - t1) / args.poll_interval)
            r["other_commands_in_window"] = sum(v for c, v in in_window.items() if c != "squeue")
            if counting is not None:
                polls = [d for name, t, d in counting.calls if name == "squeue" and t1 <= t < t2]
                r["status_command_s"] = statistics.median(polls) if polls else None
    finally:
        t3 = time.time()
        try:
            cluster.close()
        except Exception as e:
            r["close_error"] = repr(e)
        r["close_s"] = time.time() - t3
        r["commands_during_close"] = counted(t3)
        # Whatever close() left in the queue is a finding: cancelled here.
        r["left_behind"] = shell.drain(15)


# ---- client-side cost per job ------------------------------------------------------


def cmd_overhead(args):
    """What the client itself spends per job: `scale(jobs=k)` against a batch
    system that answers every command at once (a stub runner for jqref, a stub
    command call for dask-jobqueue), so only rendering and bookkeeping count.
    It runs on the event loop the scheduler shares."""
    import itertools

    ids = itertools.count(1000)
    options = dict(cores=1, memory="512MiB", processes=1, python=PYTHON)
    if args.contender == "djq":
        import dask_jobqueue.core as djq_core
        from dask_jobqueue import SLURMCluster

        async def answer(cmd, **kw):
            return f"{next(ids)}\n"

        djq_core.Job._call = staticmethod(answer)
        cluster = SLURMCluster(**options, scheduler_options={"dashboard_address": ":0"})
    else:
        from jqref import SLURMCluster

        runner = instant_runner(lambda argv: f"{next(ids)}\n" if argv[0] == "sbatch" else "")
        cluster = SLURMCluster(**options, runner=runner, scheduler_options={"dashboard_address": ":0"})
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        cluster.scale(jobs=args.k)
        deadline = time.monotonic() + 60
        while len(cluster.workers) < args.k and time.monotonic() < deadline:
            time.sleep(0.001)
        times.append(time.perf_counter() - t)
        cluster.scale(jobs=0)
        while len(cluster.workers) > 0 and time.monotonic() < deadline:
            time.sleep(0.001)
    log(f"overhead {args.contender}: scale(jobs={args.k}) {statistics.median(times) * 1e3:.0f} ms")
    cluster.close()  # its record and the workers' credentials go with it (emit leaves without at-exit handlers)
    emit(dict(contender=args.contender, k=args.k, scale_s=times))


# ---- SSH round trip ----------------------------------------------------------------


def _timed_sequential(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def cmd_rtt(args):
    """Round trip of one command: jqref's SSHRunner on its persistent
    connection, a fresh `ssh` process per command (what a runner that shells
    out would pay), and OpenSSH's own multiplexing (ControlMaster) as a
    reference; then bursts of concurrent commands over jqref's connection."""
    import tempfile

    from jqref import SSHRunner

    config = os.environ["JQREF_SSH_CONFIG"]
    results = []
    control_dir = tempfile.mkdtemp(prefix="jqref-bench-cm-")
    for destination in args.destinations:
        ssh = ["ssh", "-F", config, "-o", "BatchMode=yes"]
        mux = [*ssh, "-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C", "-o", "ControlPersist=120"]
        t = time.perf_counter()
        runner = SSHRunner(destination, config_file=config)
        runner.run_blocking(["true"]).check()
        connect = time.perf_counter() - t
        subprocess.run([*mux, destination, "true"], check=True, capture_output=True, timeout=60)
        for command in (["true"], ["squeue", "--noheader"]):

            async def sequential():
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    (await runner.run(command)).check()
                    times.append(time.perf_counter() - t)
                return times

            row = dict(destination=destination, command=shlex.join(command), jqref_connect_s=connect)
            row["jqref_s"] = asyncio.run(sequential())
            row["fresh_ssh_s"] = _timed_sequential(
                lambda: subprocess.run([*ssh, destination, *command], check=True, capture_output=True, timeout=60),
                max(5, args.repeat // 2),
            )
            row["openssh_mux_s"] = _timed_sequential(
                lambda: subprocess.run([*mux, destination, *command], check=True, capture_output=True, timeout=60),
                args.repeat,
            )
            results.append(row)
            log(
                f"rtt {destination} {command}: jqref {statistics.median(row['jqref_s']) * 1e3:.1f} ms, "
                f"fresh ssh {statistics.median(row['fresh_ssh_s']) * 1e3:.0f} ms, "
                f"ssh ControlMaster {statistics.median(row['openssh_mux_s']) * 1e3:.1f} ms"
            )

        async def burst(n):
            t = time.perf_counter()
            out = await asyncio.gather(*(runner.run(["true"]) for _ in range(n)), return_exceptions=True)
            return time.perf_counter() - t, sum(isinstance(x, BaseException) for x in out)

        for n in (8, 16):
            runs = [asyncio.run(burst(n)) for _ in range(args.bursts)]
            results.append(
                dict(
                    destination=destination,
                    command=f"{n} x true at once",
                    jqref_s=[d for d, _ in runs],
                    failed_commands=sum(e for _, e in runs),
                    commands=n * args.bursts,
                )
            )
            log(
                f"burst {destination} {n}: {statistics.median(d for d, _ in runs) * 1e3:.0f} ms, "
                f"{sum(e for _, e in runs)} of {n * args.bursts} commands failed"
            )
        # (The TCP_NODELAY experiment that was here is jqref's own now: SSHRunner sets it on connecting.)
        asyncio.run(runner.close())
        subprocess.run([*mux, "-O", "exit", destination], capture_output=True, timeout=30)
    # How many concurrent channels sshd (MaxSessions 10) takes under churn:
    # jqref's max_sessions swept, 16 commands at once, on the last route.
    for sessions in (4, 5, 6, 8):
        runner = SSHRunner(args.destinations[-1], config_file=config, max_sessions=sessions)
        runner.run_blocking(["true"]).check()

        failures = []

        async def burst16():
            t = time.perf_counter()
            out = await asyncio.gather(*(runner.run(["true"]) for _ in range(16)), return_exceptions=True)
            failures.extend(f"{type(x).__name__}: {x}" for x in out if isinstance(x, BaseException))
            return time.perf_counter() - t, sum(isinstance(x, BaseException) for x in out)

        runs = [asyncio.run(burst16()) for _ in range(args.bursts)]
        results.append(
            dict(
                destination=args.destinations[-1],
                command=f"16 x true at once, max_sessions={sessions}",
                jqref_s=[d for d, _ in runs],
                failed_commands=sum(e for _, e in runs),
                commands=16 * args.bursts,
                bursts_with_errors=sum(1 for _, e in runs if e),
                failures=failures,
            )
        )
        log(
            f"max_sessions={sessions}: {statistics.median(d for d, _ in runs) * 1e3:.0f} ms per burst of 16, "
            f"{results[-1]['failed_commands']} of {16 * args.bursts} commands failed"
        )
        asyncio.run(runner.close())
    shutil.rmtree(control_dir, ignore_errors=True)
    emit(results)


# ---- worker start-up components on a compute node ------------------------------------


def startup_cases(python=PYTHON):
    """The commands `startup` times, by name: each piece of a worker's start
    that a job pays before the worker runs."""
    return {
        "python -c pass": [python, "-c", "pass"],
        "import distributed": [python, "-c", "import distributed"],
        "dask worker --help": [python, "-m", "distributed.cli.dask_worker", "--help"],
    }


def cmd_startup(args):
    """Run on a compute node (docker exec): how long a bare interpreter, the import
    of distributed and the worker command's own start take there."""
    results = {}
    for name, argv in startup_cases(args.python).items():
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True, timeout=60)
            times.append(time.perf_counter() - t)
        results[name] = times
        log(f"startup {name}: {statistics.median(times) * 1e3:.0f} ms")
    emit(results)


# ---- polling at scale: what one status poll costs the client ------------------------


def _status_output(scheduler: str, ids: list[str]) -> str:
    """What each batch system's status command prints for `ids`, all running."""
    if scheduler == "slurm":
        return "".join(f"{i} RUNNING\n" for i in ids)
    if scheduler == "sge":
        entries = "".join(
            f"<job_list state='running'><JB_job_number>{i}</JB_job_number><JB_name>dask-worker"
            f"</JB_name><state>r</state></job_list>"
            for i in ids
        )
        return f"<?xml version='1.0'?><job_info><queue_info>{entries}</queue_info></job_info>"
    if scheduler == "htcondor":
        return "".join(f"{i.split('.')[0]} 0 2\n" for i in ids)
    return "".join(
        f"Job Id: {i}\n    Job_Name = dask-worker-0123abcd\n    job_state = R\n    queue = workq\n\n" for i in ids
    )


def cmd_poll(args):
    """One BatchQueue.poll over n running jobs against a stub runner that
    prints the batch system's answer at once: the commands it issues and the
    client's time to build them and parse the answer."""
    from jqref import BatchQueue, HTCondorJob, PBSJob, SGEJob, SLURMJob
    from jqref.runners import CommandResult

    classes = {"slurm": SLURMJob, "sge": SGEJob, "htcondor": HTCondorJob, "pbs": PBSJob}
    rows = []
    for scheduler, job_cls in classes.items():
        for n in args.n:
            ids = [f"{1000 + i}.0" if scheduler == "htcondor" else f"{1000 + i}" for i in range(n)]
            known = set(ids)

            class Answers:
                commands = 0

                async def run(self, argv, *, stdin=None, timeout=None):
                    Answers.commands += 1
                    named = [i for a in argv for i in a.removeprefix("--jobs=").split(",")]  # squeue's one argument
                    shown = [i for i in named if i in known] or ids  # SGE's qstat -xml names none
                    return CommandResult(tuple(argv), 0, _status_output(scheduler, shown), "")

            batch = BatchQueue(job_cls, Answers())
            template = job_cls(None, "w", cores=1, memory="1GiB")
            batch.active = dict.fromkeys(ids, template)
            template.state = template.state.RUNNING
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                asyncio.run(batch.poll())
                times.append(time.perf_counter() - t)
            rows.append(dict(scheduler=scheduler, n=n, poll_s=times, commands_per_poll=Answers.commands / args.repeat))
            log(
                f"poll {scheduler} n={n}: {statistics.median(times) * 1e3:.1f} ms, "
                f"{Answers.commands / args.repeat:g} command(s)"
            )
    emit(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("workers")
    w.add_argument("--contender", required=True, choices=["floor", "floor-nonanny", *JQREF_VARIANTS, "djq"])
    w.add_argument("--n", type=int, nargs="+", default=[1, 4, 8], choices=sorted(SHAPES))
    w.add_argument("--round", type=int, default=0)
    w.add_argument("--poll-interval", type=float, default=5.0)
    q = sub.add_parser("queue")
    q.add_argument("--contender", required=True, choices=["jqref-local", "jqref-ssh", "jqref-noarray", "djq"])
    q.add_argument("--k", type=int, nargs="+", default=[1, 10, 100])
    q.add_argument("--poll-interval", type=float, default=1.0)
    q.add_argument("--window", type=float, default=5.0)
    q.add_argument("--repeat", type=int, default=3, help="submit/close timings per k (commands counted once)")
    r = sub.add_parser("rtt")
    r.add_argument("--destinations", nargs="+", required=True)
    r.add_argument("--repeat", type=int, default=20)
    r.add_argument("--bursts", type=int, default=20)
    o = sub.add_parser("overhead")
    o.add_argument("--contender", required=True, choices=["jqref-local", "djq"])
    o.add_argument("--k", type=int, default=100)
    o.add_argument("--repeat", type=int, default=5)
    s = sub.add_parser("startup")
    s.add_argument("--repeat", type=int, default=5)
    s.add_argument("--python", default=PYTHON, help="the interpreter whose start-up is measured")
    pl = sub.add_parser("poll")
    pl.add_argument("--n", type=int, nargs="+", default=[100, 1000, 5000])
    pl.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    {
        "workers": cmd_workers,
        "queue": cmd_queue,
        "rtt": cmd_rtt,
        "startup": cmd_startup,
        "overhead": cmd_overhead,
        "poll": cmd_poll,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
