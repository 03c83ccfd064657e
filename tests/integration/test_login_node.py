"""The local mode, from this machine: the suite itself, run on the testbed's
login node as the test user, where a user of the batch system sits.

Collected only where pytest runs outside the testbed (conftest deselects it
elsewhere); its output is the inner run's, test by test. The inner run
writes its counts to a file on the login node, which this test reads back
for the final summary here (conftest's pytest_terminal_summary): "login
node: 4 passed, ..." and the total over both places, so this one test does
not stand for the tests it ran.
"""

from __future__ import annotations

import json
import uuid

import pytest

from .conftest import LOGIN_NODE_RUN

pytestmark = pytest.mark.integration


def inner_arguments(config) -> list[str]:
    """The outer run's selection, for the inner one."""
    args = ["-v", "--timeout", "900", "-p", "no:cacheprovider"]
    if config.option.keyword:
        args += ["-k", config.option.keyword]
    if config.option.markexpr:
        args += ["-m", config.option.markexpr]
    if config.option.maxfail == 1:  # -x
        args.append("-x")
    if config.option.durations is not None:
        args.append(f"--durations={config.option.durations}")
    return args


@pytest.mark.timeout(3600)  # the whole local suite; each of its tests has its own timeout there
def test_the_suite_in_local_mode_on_the_login_node(request, testbed_up, scheduler_name, capsys):
    command = [
        "python",
        "-m",
        "pytest",
        "/src/tests/integration",
        "--scheduler",
        scheduler_name,
        "--mode",
        "local",
        *inner_arguments(request.config),
    ]
    counts_file = f"/tmp/jqref-login-node-counts-{uuid.uuid4().hex[:8]}.json"
    run = request.config.stash[LOGIN_NODE_RUN] = {"nodeid": request.node.nodeid, "counts": None}
    login = testbed_up.get("login")
    exec_id = login.client.api.exec_create(
        login.id,
        command,
        user="dask",
        workdir="/home/dask",  # jobs start in the submit directory, as users' do
        environment={"PYTHONPATH": "/src", "JQREF_ON_LOGIN_NODE": "1", "JQREF_COUNTS_FILE": counts_file},
    )["Id"]
    with capsys.disabled():
        print(f"\n---- {' '.join(command)} (on the login node, as dask)")
        for chunk in login.client.api.exec_start(exec_id, stream=True):
            print(chunk.decode(errors="replace"), end="", flush=True)
    code = login.client.api.exec_inspect(exec_id)["ExitCode"]
    found, written, _ = testbed_up.exec("login", "cat", counts_file, check=False)
    testbed_up.exec("login", "rm", "-f", counts_file, check=False)
    if found == 0:
        run.update(json.loads(written))
    # pytest's 5: nothing selected there (e.g. -k matched only SSH-mode tests).
    assert code in (0, 5), f"the suite on the login node failed (pytest exit status {code}); its output is above"
    assert run["counts"] is not None, f"the suite on the login node wrote no counts to {counts_file}"
    assert not (run["counts"]["failed"] or run["counts"]["error"]), f"tests failed on the login node: {run['counts']}"
