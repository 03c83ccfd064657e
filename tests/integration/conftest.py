"""The end-to-end suite: real batch systems in the docker testbeds.

``pytest tests/integration --scheduler slurm`` brings the testbed up through
pytest-docker's compose fixtures (or reuses one ``make up-slurm`` started),
runs the suite in both modes and tears down what it started:

- ``--mode local``: on the login node as the test user, where a user of the
  batch system sits. From this machine that is one test that runs the suite
  there (`test_login_node.py`); on the login node it is the suite itself.
- ``--mode ssh``: here, submitting over SSH through the login node.
- ``--isolated``: the variant whose compute nodes cannot reach this machine,
  in SSH mode with the scheduler on the login node.

``--keep-testbed`` leaves a testbed this run started. What pytest cannot do
(the Docker engine, the offline base image, the wheelhouse, keys, the host
firewall rule) is `scripts/testbed.sh prepare` and `access`, called once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid

import pytest
from distributed import Client

from jqref import LocalRunner, SSHRunner

from .testbeds import TESTBEDS

#: Deadline for anything that involves starting jobs and workers on a busy 2-core machine.
PATIENCE = float(os.environ.get("JQREF_TEST_PATIENCE", 180))
ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Set where the suite runs on a testbed's login node (the local mode's own run).
ON_LOGIN_NODE = os.environ.get("JQREF_ON_LOGIN_NODE") == "1"
READY_TIMEOUT = float(os.environ.get("READY_TIMEOUT", 300))


#: Where job output goes: the shared home on every testbed node.
LOGS = "/home/dask/jqref-logs"


def pytest_addoption(parser):
    parser.addoption(
        "--scheduler",
        default=os.environ.get("JQREF_SCHEDULER"),
        choices=sorted(TESTBEDS),
        help="batch system of the testbed this suite runs against",
    )
    parser.addoption(
        "--mode",
        default=None,
        choices=["local", "ssh", "both"],
        help="local: the client on the login node; ssh: here, submitting over SSH; "
        "both (the default here; on the login node only local exists)",
    )
    parser.addoption(
        "--isolated",
        action="store_true",
        help="the testbed whose compute nodes cannot reach this machine; SSH mode, scheduler on login",
    )
    parser.addoption("--keep-testbed", action="store_true", help="leave up a testbed this run brought up")


def pytest_configure(config):
    """Settle the mode before the test modules are imported: some of them
    read where the scheduler runs at import."""
    if config.getoption("--isolated"):
        config.option.mode = "ssh"
        os.environ["JQREF_SCHEDULER_ON"] = "login"
        os.environ["JQREF_ISOLATED"] = "1"
    elif config.option.mode is None:
        config.option.mode = "local" if ON_LOGIN_NODE else "both"


def ssh_runner() -> SSHRunner:
    return SSHRunner(os.environ["JQREF_SSH_DESTINATION"], config_file=os.environ["JQREF_SSH_CONFIG"])


def scheduler_on() -> str:
    """Where SSH mode's Dask scheduler runs: "client" (this process) or "login"
    (--isolated sets it, after this module is imported)."""
    return os.environ.get("JQREF_SCHEDULER_ON", "client")


def mode_options(mode: str) -> dict:
    """Cluster options that differ between the modes."""
    if mode == "local":
        return {}
    ssh = {"python": "/opt/jqref/bin/python3"}  # the compute nodes' environment, not this machine's
    if scheduler_on() == "login":
        # On the login node, listening where the compute nodes reach it (with
        # TLS, the default there).
        return {**ssh, "scheduler_on": "login", "scheduler_options": {"host": os.environ["JQREF_LOGIN_ADDRESS"]}}
    return {**ssh, "scheduler_options": {"host": os.environ["JQREF_SCHEDULER_HOST"]}}


#: Why a test never runs in this run, by marker: the terminal summary counts
#: each reason, so nothing deselected goes unsaid.
DESELECTED = pytest.StashKey[dict]()


def why_not_here(item, config) -> str | None:
    """Why `item` cannot run in this run (None: it runs). Tests that can never
    run in a target are deselected for a reason said here, never skipped."""
    scheduler, mode, isolated = config.getoption("--scheduler"), config.option.mode, config.getoption("--isolated")
    # From this machine the local mode is one test that runs the suite on the
    # login node; that test is the only one there, and nowhere else.
    if item.path.name == "test_login_node.py":
        if ON_LOGIN_NODE:
            return "the local mode's launcher (it runs this suite here, from outside the testbed)"
        return None if mode in ("local", "both") else "the local mode (not in this run: --mode ssh or --isolated)"
    if not ON_LOGIN_NODE and mode == "local":
        return "run on the login node by test_login_node.py (--mode local)"
    only = item.get_closest_marker("schedulers")
    if only and scheduler not in only.args:
        return f"for {' and '.join(only.args)} only"
    if item.get_closest_marker("isolated") and not isolated:
        return "need the isolated testbed (make test-isolated-<s>, --isolated): the Dask scheduler on the login node"
    # "host" tests drive the testbed from this machine; the isolated variant adds nothing to them,
    # nor to those where the scheduler's placement changes nothing: the SSH mode runs those, and
    # the local mode (on the login node) only what differs from it.
    if item.get_closest_marker("host") and (ON_LOGIN_NODE or isolated):
        return "drive the testbed from this machine (host): the SSH mode runs them"
    if item.get_closest_marker("placement_independent") and (ON_LOGIN_NODE or isolated):
        return "placement-independent: the SSH mode runs them"
    if ON_LOGIN_NODE and item.get_closest_marker("needs_docker"):
        return "need docker on the host (root on the nodes), which the test user on the login node has not"
    if ON_LOGIN_NODE and item.get_closest_marker("ssh_mode"):
        return "SSH mode only (SSHRunner's own promises)"
    return None


def pytest_collection_modifyitems(config, items):
    if config.getoption("--scheduler") is None:
        # Not a target that cannot run them: no target was named (a real cause, said).
        skip = pytest.mark.skip(
            reason="needs a testbed: pass --scheduler (e.g. pytest tests/integration "
            "--scheduler slurm), or run make test-<scheduler>"
        )
        for item in items:
            item.add_marker(skip)
        return
    keep, drop, why = [], [], {}
    for item in items:
        reason = why_not_here(item, config)
        (keep if reason is None else drop).append(item)
        if reason is not None:
            why[reason] = why.get(reason, 0) + 1
    config.stash[DESELECTED] = why
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


#: What the local mode's run on the login node counted (test_login_node.py puts it here):
#: {"counts": {outcome: n} or None if that run never finished, "seconds": its duration, "nodeid": the test's}.
LOGIN_NODE_RUN = pytest.StashKey[dict]()
#: Set by test_login_node.py for the run on the login node: where it writes its counts.
COUNTS_FILE = os.environ.get("JQREF_COUNTS_FILE")
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
SESSION_START = pytest.StashKey[float]()


def pytest_sessionstart(session):
    session.config.stash[SESSION_START] = time.monotonic()


def outcome_counts(terminalreporter) -> dict[str, int]:
    """This run's tests by outcome, as pytest's own summary line counts them."""
    stats = terminalreporter.stats
    counts = {key: sum(getattr(r, "count_towards_summary", True) for r in stats.get(key, [])) for key in OUTCOMES}
    counts["deselected"] = len(stats.get("deselected", []))
    return counts


def describe(counts: dict[str, int]) -> str:
    """Counts as pytest says them, "4 passed, 0 failed, 2 skipped": passed and failed always, the rest if any."""
    return ", ".join(f"{n} {key}" for key, n in counts.items() if n or key in ("passed", "failed"))


def pytest_terminal_summary(terminalreporter, config):
    why = config.stash.get(DESELECTED, {})
    if why:
        terminalreporter.ensure_newline()  # else the first line after the header is blank
        terminalreporter.section("deselected: why these tests do not run here", sep="-")
        for reason, count in why.items():
            terminalreporter.write_line(f"{count:3d} {'test' if count == 1 else 'tests'}: {reason}")
        chosen = len(terminalreporter.stats.get("deselected", [])) - sum(why.values())
        if chosen > 0:
            terminalreporter.write_line(
                f"{chosen:3d} {'test' if chosen == 1 else 'tests'}: not chosen (-k, -m, --deselect)"
            )
    if ON_LOGIN_NODE and COUNTS_FILE:
        # For the test that started this run: the counts it reports outside (and the outcome it must have).
        seconds = time.monotonic() - config.stash.get(SESSION_START, time.monotonic())
        pathlib.Path(COUNTS_FILE).write_text(
            json.dumps({"counts": outcome_counts(terminalreporter), "seconds": seconds})
        )
    if Timings.KEY in config.stash:
        terminalreporter.ensure_newline()
        terminalreporter.section("testbed", sep="-")
        terminalreporter.write_line(config.stash[Timings.KEY].summary())
    login = config.stash.get(LOGIN_NODE_RUN, None)
    if login is None:
        return
    terminalreporter.ensure_newline()
    terminalreporter.section("the local mode, run on the login node", sep="-")
    name = login["nodeid"].split("::")[-1]
    if login["counts"] is None:
        terminalreporter.write_line(f"login node: no counts, its run did not finish (see {name}'s output)", red=True)
        return
    inner = login["counts"]
    bad = inner["failed"] or inner["error"]
    terminalreporter.write_line(
        f"login node: {describe(inner)} in {login['seconds']:.1f}s (run inside {name}, which counts as one test here)",
        red=bool(bad),
        green=not bad,
    )
    # Everything this run ran: the tests here, less the one that ran the login node's, and the login node's.
    total = outcome_counts(terminalreporter)
    del total["deselected"]
    for key in OUTCOMES:
        if any(r.nodeid == login["nodeid"] for r in terminalreporter.stats.get(key, [])):
            total[key] -= 1
            break
    for key in OUTCOMES:
        total[key] += inner[key]
    terminalreporter.write_line(f"in all, here and on the login node: {describe(total)}")


def wait_for(condition, what: str, timeout: float = PATIENCE, interval: float = 0.5):
    """Poll `condition` until it returns something true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---- the testbed, from this machine (pytest-docker) ---------------------------


@pytest.fixture(scope="session")
def scheduler_name(request) -> str:
    return request.config.getoption("--scheduler")


@pytest.fixture(scope="session")
def isolated(request) -> bool:
    return request.config.getoption("--isolated")


@pytest.fixture(scope="session")
def docker_compose_file(scheduler_name, isolated):
    files = [str(ROOT / "docker" / scheduler_name / "compose.yaml")]
    return files + [str(ROOT / "docker" / "isolated.yaml")] if isolated else files


def testbed_script(action: str, scheduler: str, isolated: bool, project: str | None = None) -> str:
    """`scripts/testbed.sh action scheduler` for this testbed; its output."""
    env = {**os.environ, "ISOLATED": "1" if isolated else "0", **({"TESTBED_PROJECT": project} if project else {})}
    return subprocess.run(
        [str(ROOT / "scripts" / "testbed.sh"), action, scheduler],
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout


@pytest.fixture(scope="session")
def docker_compose_project_name(scheduler_name, isolated) -> str:
    """The name `make up-<s>` gives the testbed (TESTBED_PROJECT overrides it), so that one is reused."""
    return testbed_script("project", scheduler_name, isolated).strip()


class Timings:
    """How long each step of bringing the testbed up (and down) took: said on
    the terminal as each step ends, so that a slow build shows as a build and
    not as a slow first test, and all of them again in the final summary."""

    KEY = pytest.StashKey["Timings"]()

    def __init__(self, config, project: str):
        self.config, self.project, self.steps = config, project, []
        #: When the teardown that ends with `compose down` began (testbed_up's teardown sets it).
        self.down_from: float | None = None

    @contextlib.contextmanager
    def step(self, what: str):
        started = time.monotonic()
        yield
        self.add(what, time.monotonic() - started)

    def add(self, what: str, seconds: float) -> None:
        self.steps.append((what, seconds))
        self.say(f"{what}: {seconds:.1f}s")

    def say(self, text: str) -> None:
        """A line on the terminal now, outside the output captured for the test that is starting."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(f"[{time.strftime('%H:%M:%S')}] testbed {self.project}: {text}")

    def summary(self) -> str:
        return f"testbed {self.project}: " + ", ".join(f"{what} {seconds:.1f}s" for what, seconds in self.steps)


@pytest.fixture(scope="session")
def timings(request, docker_compose_project_name) -> Timings:
    request.config.stash[Timings.KEY] = Timings(request.config, docker_compose_project_name)
    return request.config.stash[Timings.KEY]


@pytest.fixture(scope="session")
def containers(scheduler_name, docker_compose_project_name, isolated, timings):
    """The testbed's containers (Docker SDK); the host-side steps done first."""
    from .testbeds.containers import Containers

    with timings.step("prepare (docker engine, node image, keys)"):
        testbed_script("prepare", scheduler_name, isolated, docker_compose_project_name)
    os.environ.setdefault("NODE_IMAGE", "jqref/node:trixie")
    os.environ.setdefault("JQREF_SRC", str(ROOT))
    return Containers(docker_compose_project_name)


@pytest.fixture(scope="session")
def reused(containers) -> bool:
    """Whether the testbed was already up (e.g. `make up-slurm`): then it is left as it is."""
    return containers.running("login")


@pytest.fixture(scope="session")
def docker_setup(reused):
    return [] if reused else ["up --detach --build --quiet-pull"]


@pytest.fixture(scope="session")
def docker_cleanup(reused, request, timings):
    if reused or request.config.getoption("--keep-testbed"):
        yield []
        return
    yield ["down --volumes --remove-orphans --timeout 5"]
    # pytest-docker's docker_services, torn down just before this, has run it since testbed_up's teardown ended.
    if timings.down_from is not None:
        timings.add("compose down", time.monotonic() - timings.down_from)


@pytest.fixture(scope="session")
def testbed_up(request, scheduler_name, docker_compose_project_name, isolated, containers, reused, timings):
    """The testbed running jobs and reachable over SSH; its addresses in the
    environment, where the suite and the clients it starts in other processes read them."""

    def ready() -> tuple[int, str, str]:
        return containers.exec("login", "bash", f"/src/docker/{scheduler_name}/ready.sh", check=False)

    with timings.step("already up, reused" if reused else "compose up --build (images, containers)"):
        docker_services = request.getfixturevalue("docker_services")
    docker_cleanup = request.getfixturevalue("docker_cleanup")
    try:
        with timings.step("ready.sh passing"):
            docker_services.wait_until_responsive(check=lambda: ready()[0] == 0, timeout=READY_TIMEOUT, pause=2)
    except Exception:
        _, out, err = ready()
        raise RuntimeError(
            f"the {scheduler_name} testbed was not ready after {READY_TIMEOUT:g} s; ready.sh says: "
            f"{(out + err).strip()[-2000:]} (daemon logs: make logs-{scheduler_name})"
        ) from None
    with timings.step("SSH access (sshd, keys, certificates)"):
        testbed_script("access", scheduler_name, isolated, docker_compose_project_name)
    timings.say(f"up in {sum(seconds for _, seconds in timings.steps):.1f}s")
    config = ROOT / "build" / "ssh" / f"{docker_compose_project_name}.config"
    bastion = f"Host {docker_compose_project_name}-via-bastion" in config.read_text()
    os.environ.update(
        JQREF_SSH_CONFIG=str(config),
        JQREF_SSH_DESTINATION=f"{docker_compose_project_name}-{'via-bastion' if bastion else 'login'}",
        JQREF_TESTBED_PROJECT=docker_compose_project_name,
        JQREF_SCHEDULER_HOST=containers.gateway(),
        JQREF_LOGIN_ADDRESS=containers.address("login", "default"),
    )
    yield containers
    if isolated and docker_cleanup:
        with timings.step("unisolate (host firewall rule removed)"):
            testbed_script("unisolate", scheduler_name, isolated, docker_compose_project_name)
    timings.down_from = time.monotonic()


# ---- what every test gets -------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def job_records(tmp_path_factory):
    """Keep this run's job records (and those of the clients it kills) apart
    from earlier runs': a testbed brought up afresh hands out the same job ids
    again, and `jqref list` must show only what this run left."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def mode(request):
    """The mode of the tests in this process: local on the login node, ssh here."""
    return "local" if ON_LOGIN_NODE else "ssh"


@pytest.fixture(scope="session")
def runner(request, mode):
    """Where batch commands run, shared by the clusters and the testbed's checks."""
    if not ON_LOGIN_NODE:
        request.getfixturevalue("testbed_up")
    runner = LocalRunner() if mode == "local" else ssh_runner()
    runner.run_blocking(["mkdir", "-p", LOGS]).check()
    yield runner
    asyncio.run(runner.close())


@pytest.fixture(scope="session")
def testbed(request, runner):
    return TESTBEDS[request.config.getoption("--scheduler")](runner)


@pytest.fixture
def job_name(request):
    """A job name unique to the test, so queue checks see only its jobs."""
    return f"jq-{request.node.name[5:25].strip('_[]')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def cluster_options(testbed, job_name, mode):
    """The suite's defaults for clusters."""
    options = mode_options(mode)
    options["scheduler_options"] = {"dashboard_address": ":0", **options.get("scheduler_options", {})}
    return dict(
        cores=1,
        memory="512MiB",
        queue=testbed.queue,
        job_name=job_name,
        death_timeout=30,
        poll_interval="1s",
        log_directory=LOGS,
        **testbed.cluster_defaults,
        **options,
    )


@pytest.fixture
def make_cluster(testbed, job_name, cluster_options, runner):
    """Clusters with the suite's defaults; closed after the test, and the
    queue must then hold none of their jobs."""
    clusters = []

    def make(**kwargs):
        cluster = testbed.cluster_cls(**{"runner": runner, **cluster_options, **kwargs})
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()
    assert testbed.active_jobs(job_name) == set(), "jobs left in the queue after close()"


@pytest.fixture
def client_for():
    clients = []

    def connect(cluster):
        clients.append(Client(cluster))
        return clients[-1]

    yield connect
    for c in clients:
        c.close()


def worker_count(client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def worker_names(client) -> set[str]:
    return {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}


@contextlib.contextmanager
def client_process(scheduler: str, mode: str, options: dict, jobs: int, workers: int, publish: bool = False):
    """A client in its own process, once `workers` workers are up (and it
    published ``answer``, if asked): yields the process, its job ids and its
    record's id, and SIGKILLs it at the end (nothing gets to cancel anything)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.client_to_kill",
            scheduler,
            mode,
            json.dumps(options),
            str(jobs),
            str(workers),
            *(["publish"] if publish else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": repo},
    )
    try:
        started = json.loads(proc.stdout.readline())
        yield proc, set(started["jobs"]), started["record"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def start_and_kill_client(
    scheduler: str, mode: str, options: dict, jobs: int, workers: int, publish: bool = False
) -> tuple[set[str], str]:
    """`client_process`, killed at once: its job ids and its record's id."""
    with client_process(scheduler, mode, options, jobs, workers, publish) as (_, job_ids, record):
        return job_ids, record


def node_containers():
    """The testbed's containers, to act on nodes from outside any SSH
    connection (as the network would): only where the suite runs on the host."""
    from .testbeds.containers import Containers

    return Containers(os.environ["JQREF_TESTBED_PROJECT"])
