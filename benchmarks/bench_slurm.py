"""SLURM benchmark: time to N workers for jqref (local and SSH mode) and
dask-jobqueue on the same testbed in the same run, the floor for that figure,
SSH round trips, batch commands per polling interval, and testbed bring-up.

    .venv/bin/python benchmarks/bench_slurm.py [--rounds 7] [--cold] [--keep]

(`make bench-slurm`; `COLD=1` adds the cold image build.) Brings up its own
instance of the SLURM testbed (compose project `jqref-bench`, or
$TESTBED_PROJECT), so a testbed someone else is using is left alone, and tears
it down at the end unless --keep. Writes benchmarks/results/slurm.json (every
measurement), slurm.md (tables, machine description) and
slurm-time-to-workers.png (plot; matplotlib comes from a separate venv,
build/bench-venv, created on first use), and only when the run completed:
a run that failed, or measured nothing for a contender, leaves results/ as
it was and saves what it did measure in build/bench-partial/<name>.json.

dask-jobqueue (the released wheel, downloaded on this machine into
build/bench-wheels) is installed only for the benchmark, into
/home/dask/bench-djq on the testbed's shared home, and is on the path only of
the processes that measure it.

Speed is measured here and never asserted: nothing fails because a number is
high. Each wait has a deadline; the whole run takes about 10 minutes (the cold
build adds the time apt takes to fetch the packages).

    .venv/bin/python benchmarks/bench_slurm.py --smoke --reuse --results-dir DIR

is the check that the benchmark still runs (the integration suite's
tests/integration/test_benchmarks_smoke.py): every step once at its smallest,
on a testbed already up (--reuse: nothing brought up or torn down), results
into DIR (never results/: a smoke's figures are not results).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
#: Where a run that did not complete leaves what it measured: results/ holds only whole runs.
PARTIAL = os.path.join(REPO, "build", "bench-partial")
PROJECT = os.environ.get("TESTBED_PROJECT", "jqref-bench")
DJQ_VERSION = os.environ.get("BENCH_DJQ_VERSION", "0.9.0")
WHEELS = os.path.join(REPO, "build", "bench-wheels")
PLOT_VENV = os.path.join(REPO, "build", "bench-venv")
HOST_PYTHON = os.path.join(REPO, ".venv", "bin", "python")
CONTENDERS = ["floor", "jqref-local", "jqref-ssh", "djq"]
#: Also measured each round, reported with the floor: the worker without a nanny.
EXTRA = {"floor-nonanny": [1, 4]}
LABELS = {
    "floor": "floor (bare sbatch --array + worker)",
    "floor-nonanny": "floor without nanny",
    "jqref-noarray": "jqref local, one sbatch per job (arrays=False)",
    # A past experiment, no longer run (the check moved into the worker's own process); its
    # recorded results (results/slurm-version-check.*) still render.
    "jqref-nocheck": "jqref local without its version check (experiment)",
    "jqref-local": "jqref local",
    "jqref-ssh": "jqref SSH",
    "djq": f"dask-jobqueue {DJQ_VERSION}",
}
T_START = time.monotonic()
#: Extra measure.py arguments per step (`--smoke` sets them: each step at its smallest).
STEP_ARGS: dict[str, list[str]] = {}
SMOKE_STEP_ARGS = {
    "startup": ["--repeat", "1"],
    "rtt": ["--repeat", "2", "--bursts", "1"],
    "queue": ["--k", "1", "--repeat", "1", "--window", "1"],
    "overhead": ["--k", "2", "--repeat", "1"],
}


def log(msg):
    elapsed = time.monotonic() - T_START
    print(f"[bench {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {msg}", file=sys.stderr, flush=True)


def run(argv, *, timeout=600, env=None, check=True, capture=True, cwd=REPO):
    env = {**os.environ, "TESTBED_PROJECT": PROJECT, **(env or {})}
    p = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        timeout=timeout,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}:\n{(p.stderr or '')[-3000:]}")
    return p


def testbed(*args, **kw):
    return run([os.path.join(REPO, "scripts", "testbed.sh"), *args], **kw)


def bench_json(p):
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("BENCH-JSON "):
            return json.loads(line[len("BENCH-JSON ") :])
    raise RuntimeError(f"no result in the output:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")


#: Where jqref is imported from: the working tree (None), or a directory
#: holding a committed revision's jqref/ (--jqref-ref), relative to the repo.
JQREF_DIR = None


def jqref_export(ref):
    """Export `ref`'s jqref/ into build/bench-jqref/<sha> (git archive): a
    fixed revision, untouched by edits made in the work tree meanwhile."""
    global JQREF_DIR
    sha = run(["git", "rev-parse", "--short", f"{ref}^{{commit}}"]).stdout.strip()
    rel = os.path.join("build", "bench-jqref", sha)
    dest = os.path.join(REPO, rel)
    if not os.path.isdir(os.path.join(dest, "jqref")):
        os.makedirs(dest, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, "jqref"], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    JQREF_DIR = rel
    return sha


#: `testbed.sh exec` as the testbed's unprivileged user, in its home.
AS_TEST_USER = ("exec", "slurm", "-u", "dask", "-w", "/home/dask")


def container_path(*extra):
    return ":".join([*extra, *([f"/src/{JQREF_DIR}"] if JQREF_DIR else []), "/src"])


def in_login(args, pythonpath=None, timeout=600):
    return in_node("login", args, pythonpath, timeout)


def in_node(node, args, pythonpath=None, timeout=600):
    """measure.py with `args`, as the test user on `node` of the testbed; its JSON result."""
    pythonpath = pythonpath or container_path()
    p = testbed(
        *AS_TEST_USER,
        "-e",
        f"PYTHONPATH={pythonpath}",
        node,
        "python",
        "/src/benchmarks/measure.py",
        *args,
        timeout=timeout,
        check=False,
    )
    sys.stderr.write("".join(line + "\n" for line in p.stderr.splitlines() if line.startswith("[measure")))
    return bench_json(p)


def on_host(args, timeout=600):
    env = ssh_env()
    if JQREF_DIR:
        env["PYTHONPATH"] = os.path.join(REPO, JQREF_DIR)
    p = run([HOST_PYTHON, os.path.join(HERE, "measure.py"), *args], env=env, timeout=timeout, check=False)
    sys.stderr.write("".join(line + "\n" for line in p.stderr.splitlines() if line.startswith("[measure")))
    return bench_json(p)


def gateway():
    return run(
        ["docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", f"{PROJECT}_default"]
    ).stdout.strip()


def ssh_env():
    config = os.path.join(REPO, "build", "ssh", f"{PROJECT}.config")
    text = pathlib.Path(config).read_text() if os.path.exists(config) else ""
    destination = f"{PROJECT}-via-bastion" if f"Host {PROJECT}-via-bastion" in text else f"{PROJECT}-login"
    return {
        "JQREF_SSH_CONFIG": config,
        "JQREF_SSH_DESTINATION": destination,
        "JQREF_SCHEDULER_HOST": gateway() if text else "",
    }


# ---- steps ------------------------------------------------------------------------


def machine():
    def sh(argv, **kw):
        try:
            return run(argv, check=False, timeout=60, **kw).stdout.strip()
        except Exception as e:  # a description, not a requirement
            return f"? ({e})"

    meminfo, cpuinfo = pathlib.Path("/proc/meminfo").read_text(), pathlib.Path("/proc/cpuinfo").read_text()
    mem = next((line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")), "0")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    others = [n for n in sh(["docker", "ps", "--format", "{{.Names}}"]).split() if not n.startswith(PROJECT + "-")]
    commit = sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "status", "--porcelain", "--", "jqref"])
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} x {cpu}",
        "memory_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "docker": sh(["docker", "version", "--format", "{{.Server.Version}}"]),
        "compose": sh(["docker", "compose", "version", "--short"]),
        "host_python": sh(
            [
                HOST_PYTHON,
                "-c",
                "import sys, distributed; print(sys.version.split()[0], 'distributed', distributed.__version__)",
            ]
        ),
        "jqref": commit + (" + uncommitted changes in jqref/ (work tree)" if dirty else " (work tree)"),
        "other_containers": len(others),
        "load_start": os.getloadavg(),
    }


def bring_up(up_runs):
    """`make up-slurm` (for this project) from nothing to ready, warm images; `down` between."""
    results = {"up_s": [], "ready_in_s": [], "down_s": []}
    t = time.monotonic()
    testbed("down", "slurm", timeout=300)
    results["down_s"].append(time.monotonic() - t)
    for i in range(up_runs):
        if i:
            t = time.monotonic()
            testbed("down", "slurm", timeout=300)
            results["down_s"].append(time.monotonic() - t)
        t = time.monotonic()
        p = run(["make", "-s", "up-slurm"], timeout=900)
        results["up_s"].append(time.monotonic() - t)
        m = re.search(r"ready in (\d+)s", p.stderr)
        results["ready_in_s"].append(int(m.group(1)) if m else None)
        log(f"make up-slurm (warm) #{i + 1}: {results['up_s'][-1]:.1f}s")
    return results


def install_djq():
    name = f"dask_jobqueue-{DJQ_VERSION}-py2.py3-none-any.whl"
    wheel = os.path.join(WHEELS, name)
    locked = os.path.join(REPO, "build", "wheelhouse", name)  # the images' wheelhouse holds the locked version
    if not os.path.exists(wheel) and os.path.exists(locked):
        os.makedirs(WHEELS, exist_ok=True)
        shutil.copy(locked, wheel)
    if not os.path.exists(wheel):
        os.makedirs(WHEELS, exist_ok=True)
        run(
            [
                HOST_PYTHON,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                f"dask-jobqueue=={DJQ_VERSION}",
                "-d",
                WHEELS,
            ],
            timeout=300,
        )
    testbed(
        *AS_TEST_USER,
        "login",
        "bash",
        "-c",
        "rm -rf /home/dask/bench-djq && python -m pip install --quiet --no-deps --no-index "
        "--disable-pip-version-check --target /home/dask/bench-djq /src/build/bench-wheels/" + os.path.basename(wheel),
        timeout=300,
    )
    log(f"dask-jobqueue {DJQ_VERSION} installed in the testbed's /home/dask/bench-djq")


def cold_build():
    """Both images from scratch (no layer cache) under bench-only tags, so the
    images other testbeds use are not touched: the shared node layer, then
    the SLURM image on top. The Debian base image and the wheelhouse are
    reused (downloads, not builds)."""
    node_tag, slurm_tag = f"{PROJECT}/node:cold", f"{PROJECT}/slurm:cold"
    results = {}
    ctx = tempfile.mkdtemp(prefix="jqref-bench-node-")
    try:
        run([os.path.join(REPO, "scripts", "wheelhouse.sh")], timeout=900)
        for name in ("Dockerfile", "sshd.sh"):
            shutil.copy(os.path.join(REPO, "docker", "node", name), ctx)
        shutil.copytree(os.path.join(REPO, "build", "wheelhouse"), os.path.join(ctx, "wheelhouse"))
        t = time.monotonic()
        run(["docker", "build", "--quiet", "--no-cache", "--tag", node_tag, ctx], timeout=1800)
        results["node_image_s"] = time.monotonic() - t
        log(f"cold build of the node image: {results['node_image_s']:.0f}s")
        t = time.monotonic()
        run(
            [
                "docker",
                "build",
                "--quiet",
                "--no-cache",
                "--build-arg",
                f"NODE_IMAGE={node_tag}",
                "--tag",
                slurm_tag,
                os.path.join(REPO, "docker", "slurm"),
            ],
            timeout=1800,
        )
        results["slurm_image_s"] = time.monotonic() - t
        log(f"cold build of the slurm image: {results['slurm_image_s']:.0f}s")
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
        run(["docker", "rmi", slurm_tag, node_tag], check=False, timeout=120)
    return results


def rounds(n_rounds, ns, everyone):
    """Every contender once per round, in an order rotated from round to round."""
    measurements = []
    for r in range(n_rounds):
        order = everyone[r % len(everyone) :] + everyone[: r % len(everyone)]
        for contender in order:
            its_ns = [n for n in ns if n in EXTRA.get(contender, ns)]
            if not its_ns:
                continue
            args = ["workers", "--contender", contender, "--round", str(r), "--n", *map(str, its_ns)]
            try:
                if contender == "jqref-ssh":
                    out = on_host(args)
                else:
                    out = in_login(args, container_path("/home/dask/bench-djq") if contender == "djq" else None)
            except Exception as e:  # one failed round does not end the benchmark
                log(f"round {r} {contender} failed: {e}")
                continue
            measurements += out
        log(f"round {r + 1}/{n_rounds} done")
    return measurements


def queue_commands(contenders=("jqref-local", "djq", "jqref-ssh"), k=None):
    results = []
    for contender in contenders:
        args = [
            "queue",
            "--contender",
            contender,
            *(["--k", str(k), "--repeat", "2"] if k else []),
            *STEP_ARGS.get("queue", []),
        ]
        try:
            if contender == "jqref-ssh":
                results += on_host(args)
            else:
                results += in_login(args, container_path("/home/dask/bench-djq") if contender == "djq" else None)
        except Exception as e:
            log(f"queue commands for {contender} failed: {e}")
    return results


def client_overhead():
    results = []
    for contender in ("jqref-local", "djq"):
        path = container_path("/home/dask/bench-djq") if contender == "djq" else None
        try:
            results.append(in_login(["overhead", "--contender", contender, *STEP_ARGS.get("overhead", [])], path))
        except Exception as e:
            log(f"client overhead for {contender} failed: {e}")
    return results


def ssh_round_trips():
    return on_host(["rtt", "--destinations", f"{PROJECT}-via-bastion", f"{PROJECT}-login", *STEP_ARGS.get("rtt", [])])


def startup_components():
    return in_node("compute1", ["startup", "--repeat", "7", *STEP_ARGS.get("startup", [])], timeout=300)


def versions_in_image():
    p = testbed(
        "exec",
        "slurm",
        "login",
        "bash",
        "-c",
        "sinfo -V; python -c 'import sys, distributed; print(sys.version.split()[0], distributed.__version__)'",
        check=False,
        timeout=60,
    )
    lines = p.stdout.split("\n")
    return {"slurm": lines[0].strip() if lines else "?", "image_python": lines[1].strip() if len(lines) > 1 else "?"}


def write_atomically(path, text):
    """Replace `path` with `text` at once: a run or a render that fails half
    way leaves the file as it was, never half written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def plot(results_file, png):
    python = os.path.join(PLOT_VENV, "bin", "python")
    if not os.path.exists(python) or run([python, "-c", "import matplotlib"], check=False).returncode != 0:
        log("creating build/bench-venv with matplotlib for the plot")
        run([sys.executable, "-m", "venv", PLOT_VENV], timeout=300)
        p = run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "matplotlib"],
            check=False,
            timeout=600,
        )
        if p.returncode != 0:
            log(f"no matplotlib, no plot: {p.stderr[-500:]}")
            return False
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(png)), prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        run([python, os.path.join(HERE, "plot.py"), results_file, partial], timeout=120)
        os.chmod(partial, 0o644)
        os.replace(partial, png)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return True


# ---- report -------------------------------------------------------------------------


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s, unit="s", scale=1.0, digits=2):
    if not s:
        return "—"
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'] * scale)} [{f.format(s['min'] * scale)}–{f.format(s['max'] * scale)}]" + (
        f" ({s['n']})" if s.get("n") else ""
    )


def paired_ratio(measurements, a, b, n):
    by_round = {}
    for m in measurements:
        if m["n"] == n and m["ok"]:
            by_round.setdefault(m["round"], {})[m["contender"]] = m["time_to_workers_s"]
    return stats([r[a] / r[b] for r in by_round.values() if a in r and b in r])


def write_report(data, path, png_name):
    write_atomically(path, render_report(data, path, png_name))


def render_report(data, path, png_name):
    """The Markdown report of a run (`path` is where it will be written)."""
    ms = data["workers"]
    ns = sorted({m["n"] for m in ms})
    present = {m["contender"] for m in ms}
    main = [c for c in ["floor", "jqref-local", "jqref-noarray", "jqref-nocheck", "jqref-ssh", "djq"] if c in present]
    ratio_pairs = [
        (a, b)
        for a, b in (
            ("jqref-local", "djq"),
            ("jqref-nocheck", "djq"),
            ("jqref-noarray", "djq"),
            ("jqref-ssh", "djq"),
            ("jqref-ssh", "jqref-local"),
            ("jqref-local", "floor"),
            ("jqref-local", "jqref-nocheck"),
        )
        if a in present and b in present
    ]
    scale = data["config"].get("scale")
    out = []
    w = out.append
    mach = data["machine"]
    w(f"# SLURM benchmark results{' at scale' if scale else ''}\n")
    if data["config"].get("smoke"):
        w(
            "**A smoke run** (`--smoke`): one round at N=1 and every step at its smallest, to check that the "
            "benchmark runs end to end. These figures are not results.\n"
        )
    w(
        f"Generated by `benchmarks/bench_slurm.py` (`make {'bench-scale' if scale else 'bench-slurm'}`); raw numbers "
        f"in `{os.path.basename(path).removesuffix('.md')}.json`. "
        "Figures are **median [min–max] (runs)** in seconds unless noted.\n"
    )
    w("## Machine and set-up\n")
    w(
        f"- {mach['date']}; {mach['cpu']}, {mach['memory_gib']} GiB, Linux {mach['kernel']}, "
        f"Docker {mach['docker']}, compose {mach['compose']}"
    )
    nodes = (
        "2 compute nodes that advertise 32 CPUs and 20 GB each (`SCALE=1`, docker/scale.yaml: far more than "
        "the machine has, so that 64 one-core jobs run at once)"
        if scale
        else "2 compute nodes x 2 CPUs"
    )
    w(
        f"- testbed `docker/slurm` as compose project `{PROJECT}`: {data['versions']['slurm']}, login + {nodes}, "
        f"image Python/distributed {data['versions']['image_python']}; host client "
        f"{mach['host_python']}; jqref {mach['jqref']}; dask-jobqueue {DJQ_VERSION} (released wheel)"
    )
    loads = [m["load1"] for m in ms if "load1" in m]
    w(
        f"- **Noise:** the machine is shared: {mach['other_containers']} other containers were running (other "
        f"testbeds); 1-minute load average {min(loads, default=0):.1f}–{max(loads, default=0):.1f} during the "
        f"measurements (2 cores). Every contender ran once per round, in an order rotated from round to round, so "
        f"slow phases hit all of them; ratios are medians of per-round ratios."
    )
    w(
        "- Same job options for every contender: cores/processes/memory per the shapes below, walltime 00:30:00, "
        "nanny on, death-timeout "
        f"{'240 s (64 workers starting at once here take about a minute)' if scale else '30 s'}, "
        "python /opt/jqref/bin/python3, one `printf` of `$EPOCHREALTIME` as job "
        "prologue (the job's start stamp; a bash builtin). jqref polls every 5 s (its default); dask-jobqueue does "
        "not poll. SSH mode: from this machine through the bastion (ProxyJump), scheduler on the compose gateway."
    )
    if 8 in ns:
        w(
            "- **N=8:** the testbed schedules 4 one-core jobs at once (2 nodes x 2 CPUs, no oversubscription), so 8 "
            "one-core jobs could never all run. N=8 therefore means **8 workers in 4 jobs** of `cores=2, processes=2, "
            "job_cpu=1` (each job asks SLURM for 1 CPU and runs 2 one-thread workers), `scale(jobs=4)`. "
            "N=1 and N=4 are "
            "`scale(jobs=N)` of `cores=1, processes=1, memory=512MiB` jobs.\n"
        )
    if scale:
        w(
            "- N workers are `scale(jobs=N)` of `cores=1, processes=1, memory=512MiB` jobs: jqref submits them as one "
            "`sbatch --array` (its default), *one sbatch per job* is jqref with `arrays=False`, dask-jobqueue runs one "
            "`sbatch` per job.\n"
        )

    w("## 1. Time from `scale(jobs=J)` to N workers connected\n")
    short = {
        "floor": "floor",
        "jqref-local": "jqref local",
        "jqref-noarray": "jqref per-job",
        "jqref-nocheck": "jqref no check",
        "jqref-ssh": "jqref SSH",
        "djq": "dask-jobqueue",
    }
    w(
        "| N (jobs) | "
        + " | ".join(LABELS[c] for c in main)
        + " | "
        + " | ".join(f"{short[a]} / {short[b]}" for a, b in ratio_pairs)
        + " |"
    )
    w("|---|" + "---|" * (len(main) + len(ratio_pairs)))
    for n in ns:
        jobs = next(m["jobs"] for m in ms if m["n"] == n)
        cells = [
            fmt(stats([m["time_to_workers_s"] for m in ms if m["n"] == n and m["contender"] == c and m["ok"]]))
            for c in main
        ]
        ratios = [fmt(paired_ratio(ms, a, b, n), digits=2).rsplit(" (", 1)[0] for a, b in ratio_pairs]
        w(f"| {n} ({jobs}) | " + " | ".join(cells + ratios) + " |")
    failed = [m for m in ms if not m["ok"]]
    left = sum(len(m.get("left_behind", [])) for m in ms)
    sources = sorted({m["jqref_from"] for m in ms if m.get("jqref_from")})
    w(
        (
            f"\n{len(failed)} of {len(ms)} measurements missed the deadline."
            if failed
            else f"\nAll {len(ms)} measurements reached N workers."
        )
        + f" Jobs still queued after `close()` (then cancelled by the benchmark): {left}."
        + (f" jqref imported from {', '.join(f'`{x}`' for x in sources)}." if sources else "")
    )
    w(f"\n![time to N workers]({png_name})\n")

    w("### Where the time goes (medians)\n")
    w(
        "From the moment `scale` was called: all `sbatch` answered (client side), the last job's script started "
        "(its stamp), then per worker the time from its job's start to its connection to the scheduler (this includes "
        "everything the job script runs before the worker: jqref's version check). `close()` is the time the cluster "
        "object took to close (jqref waits until the queue shows its jobs gone; dask-jobqueue only runs scancel).\n"
    )
    w("| contender | N | sbatch answered | last job started | worker start (per worker) | N workers | close() |")
    w("|---|---|---|---|---|---|---|")
    for c in main + [c for c in EXTRA if c in present]:
        for n in ns:
            sel = [m for m in ms if m["n"] == n and m["contender"] == c and m["ok"]]
            if not sel:
                continue
            w(
                f"| {LABELS[c]} | {n} | {fmt(stats([m['submitted_s'] for m in sel]))} | "
                f"{fmt(stats([max(m['job_start_s']) for m in sel if m['job_start_s']]))} | "
                f"{fmt(stats([x for m in sel for x in m['worker_start_s']]))} | "
                f"{fmt(stats([m['time_to_workers_s'] for m in sel]))} | {fmt(stats([m['close_s'] for m in sel]))} |"
            )

    if "floor" in present and "startup" in data:
        floor_section(data, w, ms, ns)
    if data.get("rtt"):
        rtt_section(data, w)
    if data.get("queue"):
        queue_section(data, w)
    if data["bring_up"]["up_s"]:
        bring_up_section(data, w)
    out.append(f"\nWhole benchmark run: {data['elapsed_s'] / 60:.1f} min.\n")
    return "\n".join(out)


def floor_section(data, w, ms, ns):
    w("\n## 2. The floor on this testbed\n")
    floor1 = [m for m in ms if m["contender"] == "floor" and m["n"] == 1 and m["ok"]]
    sub = stats([m["job_start_s"][0] for m in floor1 if m["job_start_s"]])
    wst = stats([m["worker_start_s"][0] for m in floor1 if m["worker_start_s"]])
    w(
        "The floor contender is no library: a scheduler in the client process and one `sbatch --array=0-(J-1)` of a "
        "script holding only the start stamp and `exec python -m distributed.cli.dask_worker …` with the same options. "
        "For one job:\n"
    )
    w("| part | seconds |")
    w("|---|---|")
    w(f"| trivial job, `sbatch` to its script running (submit-to-start latency) | {fmt(sub)} |")
    w(f"| worker import and start, job start to connected (nanny + worker process) | {fmt(wst)} |")
    if sub and wst:
        w(f"| sum of the medians | {sub['median'] + wst['median']:.2f} |")
    w(f"| measured floor, `scale` to 1 worker | {fmt(stats([m['time_to_workers_s'] for m in floor1]))} |")
    for n in ns:
        bare = [m for m in ms if m["contender"] == "floor-nonanny" and m["n"] == n and m["ok"]]
        if bare:
            w(
                f"| without the nanny (`--no-nanny`), {n} worker{'s' if n > 1 else ''}: worker start / `scale` to "
                f"N workers | {fmt(stats([x for m in bare for x in m['worker_start_s']]))} / "
                f"{fmt(stats([m['time_to_workers_s'] for m in bare]))} |"
            )
    w(
        "\nSLURM here schedules every second (`sched_interval=1`), so submit-to-start spreads over about 0–1 s "
        "depending on where in that second a job arrives. Start-up pieces on a compute node (`docker exec`, "
        "7 runs each, no SLURM):\n"
    )
    w("| on compute1 | milliseconds |")
    w("|---|---|")
    for name, values in data["startup"].items():
        w(f"| `{name}` | {fmt(stats(values), scale=1e3, digits=0)} |")


def rtt_section(data, w):
    w("\n## 3. SSH command round trip\n")
    w(
        "jqref's `SSHRunner` on its one persistent connection vs a fresh OpenSSH `ssh` process per command, and "
        "OpenSSH's own multiplexing (`ControlMaster`, a persistent connection too) as a reference. Milliseconds.\n"
    )
    w("| route | command | jqref persistent | fresh `ssh` per command | `ssh` ControlMaster | jqref connect (once) |")
    w("|---|---|---|---|---|---|")
    for r in data["rtt"]:
        if "fresh_ssh_s" in r:
            w(
                f"| {r['destination']} | `{r['command']}` | {fmt(stats(r['jqref_s']), scale=1e3, digits=1)} | "
                f"{fmt(stats(r['fresh_ssh_s']), scale=1e3, digits=0)} | "
                f"{fmt(stats(r['openssh_mux_s']), scale=1e3, digits=1)} | "
                f"{r['jqref_connect_s'] * 1e3:.0f} |"
            )
    w("\n| route | what | jqref | failed commands |")
    w("|---|---|---|---|")
    for r in data["rtt"]:
        if "fresh_ssh_s" not in r:
            failed = f"{r['failed_commands']} of {r['commands']}" if "failed_commands" in r else "—"
            w(f"| {r['destination']} | {r['command']} | {fmt(stats(r['jqref_s']), scale=1e3, digits=1)} | {failed} |")


def queue_section(data, w):
    w("\n## 4. Batch commands per polling interval\n")
    w(
        "k jobs held in the queue (`--begin=now+1hour`, so nothing runs), poll interval 1 s; commands counted over "
        "5 s once all submissions were answered (first repetition). `submit` is `scale(jobs=k)` until every "
        "`sbatch` answered, `close` is `close()`, each repeated. dask-jobqueue does not track jobs, so it issues no "
        "status commands at all. *Left in queue* counts jobs still queued 15 s after `close()` returned.\n"
    )
    w(
        "| k | contender | status commands per interval | other commands in the window | submit s | failed submissions "
        "| close s | commands during close | left in queue |"
    )
    w("|---|---|---|---|---|---|---|---|---|")
    queue = data["queue"]
    for k in sorted({r["k"] for r in queue}):
        for c in ("jqref-local", "jqref-noarray", "jqref-ssh", "djq"):
            rs = [r for r in queue if r["k"] == k and r["contender"] == c]
            if not rs:
                continue
            first = next((r for r in rs if r.get("repeat", 0) == 0), rs[0])
            per = first.get("status_commands_per_interval")
            others = first.get(
                "other_commands_in_window", sum(first.get("commands_in_window", {}).values()) if c == "djq" else 0
            )
            close_cmds = ", ".join(f"{n} {v}" for n, v in sorted(first.get("commands_during_close", {}).items()))
            failures = sum(r.get("submit_failures", 0) for r in rs)
            left = sum(len(r.get("left_behind", [])) for r in rs)
            errors = sum(1 for r in rs if r.get("close_error"))
            w(
                f"| {k} | {LABELS[c]} | {per:.2f} | {others} | {fmt(stats([r['submit_s'] for r in rs]))} | "
                f"{failures} of {k * len(rs)} | {fmt(stats([r['close_s'] for r in rs]))}"
                f"{f' ({errors} raised)' if errors else ''} | {close_cmds or '—'} | {left} |"
            )

    if data.get("overhead"):
        w(
            "\nClient-side time alone: `scale(jobs=k)` until every job's `start()` returned, against a batch system "
            "that answers at once (a stub runner for jqref, a stub command call for dask-jobqueue); this work runs on "
            "the event loop the Dask scheduler shares.\n"
        )
        w("| contender | k | scale, instant batch system (ms) | per job (ms) |")
        w("|---|---|---|---|")
        for o in data["overhead"]:
            st = stats(o["scale_s"])
            w(
                f"| {LABELS[o['contender']]} | {o['k']} | {fmt(st, scale=1e3, digits=0)} "
                f"| {st['median'] * 1e3 / o['k']:.2f} |"
            )


def bring_up_section(data, w):
    w("\n## 5. Testbed bring-up\n")
    up = data["bring_up"]
    w("| what | seconds |")
    w("|---|---|")
    w(f"| `make up-slurm`, warm images, nothing running → ready (incl. sshd) | {fmt(stats(up['up_s']))} |")
    w(
        "| of which until `ready.sh` passed (testbed.sh's own count, whole seconds) "
        f"| {fmt(stats(up['ready_in_s']), digits=0)} |"
    )
    w(f"| `testbed.sh down slurm` | {fmt(stats(up['down_s']))} |")
    cold = data.get("cold")
    if cold:
        w(
            "| cold build, node image (`docker build --no-cache`: apt + offline pip from the wheelhouse) "
            f"| {cold['node_image_s']:.0f} |"
        )
        w(f"| cold build, SLURM image on top (`--no-cache`: apt slurm + munge) | {cold['slurm_image_s']:.0f} |")
        w(
            "| cold build total (base image and wheelhouse already present) "
            f"| {cold['node_image_s'] + cold['slurm_image_s']:.0f} |"
        )
    else:
        w("| cold image build | not run (pass --cold / COLD=1) |")


def missing_results(data, contenders, ns, only_workers):
    """What a finished run lacks to be a result: each contender measured at
    least once at each N (a contender whose every round failed is a broken
    benchmark, not a finding), and each step's figures."""
    missing = []
    for contender in contenders:
        for n in [n for n in ns if n in EXTRA.get(contender, ns)]:
            if not any(m["contender"] == contender and m["n"] == n and m["ok"] for m in data.get("workers", [])):
                missing.append(f"{contender} N={n}: no successful measurement")
    steps = ["workers"] + ([] if only_workers else ["startup", "rtt", "queue", "overhead"])
    missing += [f"{step}: nothing measured" for step in steps if not data.get(step)]
    return missing


def save_partial(data, name):
    """Keep what a run that did not complete measured, out of results/ (build/bench-partial/); the path."""
    os.makedirs(PARTIAL, exist_ok=True)
    path = os.path.join(PARTIAL, f"{name}.json")
    write_atomically(path, json.dumps(data, indent=1))
    return path


def publish(data, json_path, md_path, png_path):
    """Write a completed run's results: the report is rendered first, so a
    render that fails leaves results/ as it was."""
    report = render_report(data, md_path, os.path.basename(png_path))
    write_atomically(json_path, json.dumps(data, indent=1))
    write_atomically(md_path, report)
    plot(json_path, png_path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 10)))
    p.add_argument("--n", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--up-runs", type=int, default=3, help="warm `make up-slurm` runs (0: use a running testbed)")
    p.add_argument("--cold", action="store_true", help="also time a cold image build (downloads Debian packages)")
    p.add_argument("--keep", action="store_true", help="leave the testbed up afterwards")
    p.add_argument("--report-only", action="store_true", help="rewrite slurm.md and the plot from slurm.json")
    p.add_argument(
        "--contenders",
        nargs="+",
        default=CONTENDERS + list(EXTRA),
        choices=CONTENDERS + list(EXTRA) + ["jqref-noarray"],
    )
    p.add_argument(
        "--only-workers",
        action="store_true",
        help="measure only the time to workers (no SSH round trips, queue commands, start-up pieces)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="results/<name>.{md,json} and results/<name>-time-to-workers.png (default slurm; smoke with --smoke)",
    )
    p.add_argument(
        "--results-dir",
        default=None,
        help="where the results go (default benchmarks/results; with --smoke, build/bench-smoke)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="measure on the SLURM testbed already up as compose project $TESTBED_PROJECT (e.g. jqref-slurm, "
        "which make up-slurm and the suite use), as it is: nothing brought up, rebuilt or torn down",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="check that the benchmark runs: one round at N=1 and every step at its smallest; the figures "
        "are not results and never go into benchmarks/results (make test runs this with --reuse)",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="on the scale flavour (SCALE=1): time to 16 and 64 workers with and without arrays, and "
        "submit/poll/close of 1000 held jobs; results/slurm-scale.* (make bench-scale)",
    )
    p.add_argument(
        "--jqref-ref",
        help="benchmark this committed revision of jqref (e.g. HEAD) instead of the "
        "work tree, which others may be editing meanwhile",
    )
    args = p.parse_args(argv)
    results = args.results_dir or (os.path.join(REPO, "build", "bench-smoke") if args.smoke else RESULTS)
    if args.smoke:
        if os.path.realpath(results) == os.path.realpath(RESULTS):
            sys.exit(f"a smoke run's figures are not results: give --results-dir other than {RESULTS}")
        args.rounds, args.n, args.up_runs = 1, [1], 0
        args.name = args.name or ("smoke-scale" if args.scale else "smoke")
        STEP_ARGS.update(SMOKE_STEP_ARGS)
    args.name = args.name or "slurm"
    if args.reuse:
        args.up_runs, args.keep = 0, True
    if args.scale:
        # (A smoke, one job at a time, runs on any SLURM testbed.)
        if (os.environ.get("SCALE") != "1" or PROJECT == "jqref-bench") and not args.smoke:
            sys.exit(
                "--scale runs on its own scale testbed: SCALE=1 TESTBED_PROJECT=jqref-bench-scale (make bench-scale)"
            )
        args.n = [16, 64] if args.n == [1, 4, 8] else args.n
        # The four contenders the README names for it (results/slurm-scale.json has no floor either): a
        # contender asked for and never measured now makes the run incomplete.
        args.contenders = [c for c in args.contenders if not c.startswith("floor")] + ["jqref-noarray"]
        args.name = "slurm-scale" if args.name == "slurm" else args.name
        args.up_runs = 0
        args.only_workers = True
    os.makedirs(results, exist_ok=True)
    json_path = os.path.join(results, f"{args.name}.json")
    md_path = os.path.join(results, f"{args.name}.md")
    png_path = os.path.join(results, f"{args.name}-time-to-workers.png")
    if args.report_only:
        data = json.loads(pathlib.Path(json_path).read_text())
        write_report(data, md_path, os.path.basename(png_path))
        plot(json_path, png_path)
        return
    if not os.path.exists(HOST_PYTHON):
        sys.exit("no .venv: run `make install` first")
    data = {
        "machine": machine(),
        "config": {
            "rounds": args.rounds,
            "n": args.n,
            "project": PROJECT,
            "scale": args.scale,
            **({"smoke": True} if args.smoke else {}),
            **({"reused": True} if args.reuse else {}),
        },
    }
    if args.jqref_ref:
        data["machine"]["jqref"] = f"{jqref_export(args.jqref_ref)} (committed revision, exported)"
        log(f"benchmarking jqref {data['machine']['jqref']} from {JQREF_DIR}")
    completed = False
    try:
        if args.reuse:
            # The testbed as it is: only checked, so that a testbed that is not up fails here, clearly.
            ready = testbed("ready", "slurm", timeout=120, check=False)
            if ready is not None and ready.returncode != 0:
                raise RuntimeError(f"--reuse: the {PROJECT} testbed is not up and ready: {ready.stderr[-1000:]}")
            data["bring_up"] = {"up_s": [], "ready_in_s": [], "down_s": []}
        elif args.up_runs:
            data["bring_up"] = bring_up(args.up_runs)
        else:
            testbed("up", "slurm", timeout=900)
            data["bring_up"] = {"up_s": [], "ready_in_s": [], "down_s": []}
        data["versions"] = versions_in_image()
        install_djq()
        if not args.only_workers:
            data["startup"] = startup_components()
            data["rtt"] = ssh_round_trips()
        data["workers"] = rounds(args.rounds, args.n, args.contenders)
        if args.scale:
            data["queue"] = queue_commands(["jqref-ssh", "jqref-local", "jqref-noarray", "djq"], k=1000)
        if not args.only_workers:
            data["queue"] = queue_commands()
            data["overhead"] = client_overhead()
        if args.cold:
            data["cold"] = cold_build()
        completed = True
    finally:
        if not args.keep:
            t = time.monotonic()
            testbed("down", "slurm", timeout=300, check=False)
            timings = data.setdefault("bring_up", {"up_s": [], "ready_in_s": [], "down_s": []})
            timings["down_s"].append(time.monotonic() - t)
        data["machine"]["load_end"] = os.getloadavg()
        data["elapsed_s"] = time.monotonic() - T_START
        if not completed:  # on the way out with the error: results/ is left alone
            try:
                kept = f"what was measured is in {os.path.relpath(save_partial(data, args.name), REPO)}"
            except Exception as e:  # the run's own error is the one to see
                kept = f"what was measured could not be kept: {e!r}"
            log(f"the run failed; {os.path.relpath(json_path, REPO)} left as it was, {kept}")
    missing = missing_results(data, args.contenders, args.n, args.only_workers)
    if missing:
        sys.exit(
            f"incomplete run ({'; '.join(missing)}): {os.path.relpath(json_path, REPO)} left as it was, what "
            f"was measured is in {os.path.relpath(save_partial(data, args.name), REPO)}"
        )
    publish(data, json_path, md_path, png_path)
    log(f"done in {data['elapsed_s'] / 60:.1f} min: {md_path}")


if __name__ == "__main__":
    main()
