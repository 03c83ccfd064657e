"""The local mode, from this machine: the suite itself, run on the testbed's
login node as the test user, where a user of the batch system sits.

Collected only where pytest runs outside the testbed (conftest deselects it
elsewhere); its output is the inner run's, test by test.
"""

from __future__ import annotations

import pytest

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
    login = testbed_up.get("login")
    exec_id = login.client.api.exec_create(
        login.id,
        command,
        user="dask",
        workdir="/home/dask",  # jobs start in the submit directory, as users' do
        environment={"PYTHONPATH": "/src", "JQREF_ON_LOGIN_NODE": "1"},
    )["Id"]
    with capsys.disabled():
        print(f"\n---- {' '.join(command)} (on the login node, as dask)")
        for chunk in login.client.api.exec_start(exec_id, stream=True):
            print(chunk.decode(errors="replace"), end="", flush=True)
    code = login.client.api.exec_inspect(exec_id)["ExitCode"]
    # pytest's 5: nothing selected there (e.g. -k matched only SSH-mode tests).
    assert code in (0, 5), f"the suite on the login node failed (pytest exit status {code}); its output is above"
