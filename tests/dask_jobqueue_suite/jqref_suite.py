"""pytest plugin: dask-jobqueue's own unit tests, from its installed wheel, against jqref.

`make compat` runs them (`-p jqref_suite`, this folder first on the path, so
`import dask_jobqueue` finds the re-export package beside this file). The
wheel ships its tests but not the conftest.py that gives them their
fixtures, markers and `-E` option; this plugin provides them, as dask-jobqueue's
test suite documents them:

- `Cluster`: each cluster class, for tests that need no scheduler;
- `EnvSpecificCluster`: the class of the environment given with `-E slurm`
  (and so on), or `LocalCluster` when none is given;
- `@pytest.mark.env(NAME)`: the test needs that live environment;
- `@pytest.mark.xfail_env({NAME: reason})`: known to fail there.

Tests of schedulers jqref does not support (OAR, LSF, Moab) are deselected.
Every other test must pass, except those `differences.yaml` lists: a
listed test is reported as xfailed only when it fails at the very assertion
the file names, and fails when it passes or fails anywhere else, so the file
cannot hide a second difference nor outlive a fix.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import shutil
import tempfile

import dask
import dask_jobqueue
import dask_jobqueue.tests
import pytest
import yaml
from dask_jobqueue.local import LocalCluster
from distributed.security import Security
from distributed.utils_test import cleanup, loop, loop_in_thread  # noqa: F401  (fixtures the tests use)

#: Environment name (as given to -E) to cluster class; None: no live scheduler.
ENVIRONMENTS = {
    None: LocalCluster,
    "pbs": dask_jobqueue.PBSCluster,
    "slurm": dask_jobqueue.SLURMCluster,
    "sge": dask_jobqueue.SGECluster,
    "htcondor": dask_jobqueue.HTCondorCluster,
}
UNSUPPORTED = ("OARCluster", "LSFCluster", "MoabCluster")
#: Not collected: schedulers jqref does not support.
NOT_COLLECTED = ("test_lsf.py", "test_oar.py")
DIFFERENCES_FILE = pathlib.Path(__file__).with_name("differences.yaml")
#: The kinds of difference the file may hold; anything else must be fixed.
KINDS = {"message", "spelling", "private", "secure-default", "upstream"}


def load_differences(path: pathlib.Path = DIFFERENCES_FILE) -> dict[str, dict]:
    entries = yaml.safe_load(path.read_text()) or []
    differences = {}
    for entry in entries:
        missing = {"test", "kind", "fails_at", "reason"} - set(entry)
        if missing:
            raise ValueError(f"{path.name}: entry {entry!r} lacks {', '.join(sorted(missing))}")
        if entry["kind"] not in KINDS:
            raise ValueError(f"{path.name}: {entry['test']}: kind {entry['kind']!r} is not one of {sorted(KINDS)}")
        differences[entry["test"]] = entry
    return differences


def pytest_addoption(parser):
    parser.addoption(
        "-E",
        action="store",
        metavar="NAME",
        default=None,
        help="run the tests of the live environment NAME (slurm, sge, pbs, htcondor)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "env(NAME): only run test if environment NAME matches")
    config.addinivalue_line("markers", "xfail_env(NAME): known failure for environment NAME")
    config.stash[_differences_key] = load_differences()
    config.stash[_certificate_key] = _test_certificate()
    # Where the TLS tests put files the jobs read (dask-jobqueue's CI sets it
    # to a folder its nodes share): in the home, which the testbeds' nodes share.
    if "CI_SHARED_SPACE" not in os.environ:
        os.environ["CI_SHARED_SPACE"] = tempfile.mkdtemp(prefix=".jqref-suite-shared-", dir=os.path.expanduser("~"))
        config.add_cleanup(functools.partial(shutil.rmtree, os.environ["CI_SHARED_SPACE"], ignore_errors=True))


def _test_certificate() -> bool:
    """The key.pem and ca.pem test_security reads beside the tests: dask-jobqueue's
    source has them, its wheel does not. A self-signed pair made for the run,
    where the installed package can be written to."""
    tests = pathlib.Path(dask_jobqueue.tests.__path__[0])
    if not (tests / "key.pem").exists() or not (tests / "ca.pem").exists():
        pair = Security.temporary()
        try:
            (tests / "key.pem").write_text(pair.tls_scheduler_key)
            (tests / "ca.pem").write_text(pair.tls_ca_file)
        except PermissionError:
            return False
    return True


_differences_key = pytest.StashKey[dict]()
_certificate_key = pytest.StashKey[bool]()


def _environments(item) -> list:
    names = []
    for mark in item.iter_markers(name="env"):
        names += mark.args[0] if isinstance(mark.args[0], list) else [mark.args[0]]
    return names


def pytest_runtest_setup(item):
    env = item.config.getoption("-E")
    wanted = _environments(item)
    if wanted and env not in wanted:
        pytest.skip(
            f"needs a live batch system, one of {wanted!r}: run with -E <name> in its testbed "
            "(see the README, dask-jobqueue's own tests)"
        )
    for mark in item.iter_markers(name="xfail_env"):
        if env in mark.args[0]:
            item.add_marker(pytest.mark.xfail(reason=mark.args[0][env]))


def pytest_ignore_collect(collection_path, config):
    return True if collection_path.name in NOT_COLLECTED else None


def pytest_collection_modifyitems(config, items):
    keep, dropped = [], []
    for item in items:
        (dropped if any(name in item.nodeid for name in UNSUPPORTED) else keep).append(item)
        if item.name.startswith("test_security[") and not config.stash[_certificate_key]:
            item.add_marker(
                pytest.mark.skip(
                    reason="test_security reads key.pem and ca.pem beside the tests, which "
                    "dask-jobqueue's wheel does not ship, and its installed tests folder "
                    "cannot be written to here to put a pair there"
                )
            )
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _suite_id(item) -> str:
    """The test's id as dask-jobqueue's suite names it: tests/<module>::<test>[params]."""
    return f"tests/{item.path.name}::{item.name}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    entry = item.config.stash[_differences_key].get(_suite_id(item))
    if entry is None or report.when != "call":
        return report
    if report.passed:
        report.outcome = "failed"
        report.longrepr = (
            f"{_suite_id(item)} passes, but {DIFFERENCES_FILE.name} lists it as a difference: remove its entry"
        )
    elif call.excinfo is not None and re.search(entry["fails_at"], str(call.excinfo.value)):
        report.outcome = "skipped"
        report.wasxfail = f"{entry['kind']}: {entry['reason']}"
    return report


def _cluster_params(envs):
    return [pytest.param(cls, id=cls.__name__, marks=[pytest.mark.env(env)]) for env, cls in envs]


@pytest.fixture(params=_cluster_params(ENVIRONMENTS.items()))
def EnvSpecificCluster(request):
    """The cluster class of the environment under test (-E), LocalCluster without one."""
    return _prepared(request.param)


@pytest.fixture(params=[pytest.param(cls, id=cls.__name__) for cls in ENVIRONMENTS.values()])
def Cluster(request):
    """Each cluster class, for tests that render jobs without a scheduler."""
    return _prepared(request.param)


def _prepared(cls):
    # As dask-jobqueue's suite: its HTCondor tests rely on a configured disk request.
    if cls is dask_jobqueue.HTCondorCluster:
        dask.config.set({"jobqueue.htcondor.disk": "1GB"})
    return cls
