"""TLS material for workers, and the scheduler placement option."""

import os
import pathlib
import re
import shlex
import subprocess
import warnings

import dask.config
import pytest
from distributed.security import Security

from jqref import HTCondorCluster, HTCondorJob, SLURMCluster
from jqref.job import InlineKeyWarning
from jqref.placement.login import MAIN_SOURCE
from jqref.slurm import SLURMJob
from jqref.tls import InsecureSchedulerWarning, cluster_security, role_options, worker_environment


def test_every_cluster_gets_a_certificate_of_its_own_by_default():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first, second = cluster_security(None), cluster_security(True)
    assert first.require_encryption and first.tls_ca_file != second.tls_ca_file


def test_declining_tls_is_warned_about_with_what_it_exposes():
    with pytest.warns(InsecureSchedulerWarning, match=r"security=False.*every user of the machine.*run code as you"):
        assert cluster_security(False) is None


@pytest.mark.parametrize("cluster_cls", [SLURMCluster, HTCondorCluster])
def test_the_workers_credentials_are_private_files_the_job_script_names_and_close_removes(
    cluster_cls, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with cluster_cls(cores=1, memory="1GiB", scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
        assert cluster.scheduler_address.startswith("tls://")
        assert "PRIVATE KEY" not in script and "DASK_INTERNAL_INHERIT_CONFIG" not in script
        directory = tmp_path / ".jqref" / "credentials"
        files = {
            flag: pathlib.Path(re.search(rf"{flag}\s+'*([^\s';\"]+)", script)[1])
            for flag in ("--tls-ca-file", "--tls-cert", "--tls-key")
        }
        assert all(path.parent == directory and path.stat().st_mode & 0o777 == 0o600 for path in files.values())
        assert directory.stat().st_mode & 0o777 == 0o700
        assert "PRIVATE KEY" in files["--tls-key"].read_text()
    assert not any(path.exists() for path in files.values())


def test_a_security_without_certificates_is_refused():
    with pytest.raises(ValueError, match="tls_ca_file"):
        cluster_security(Security(require_encryption=True))
    with pytest.raises(TypeError):
        cluster_security("yes")


def test_roles_get_contents_even_when_given_paths(tmp_path):
    security = Security.temporary()
    for field in ("tls_ca_file", "tls_scheduler_cert", "tls_scheduler_key"):
        (tmp_path / field).write_text(getattr(security, field))
    from_files = Security(
        require_encryption=True,
        **{f: str(tmp_path / f) for f in ("tls_ca_file", "tls_scheduler_cert", "tls_scheduler_key")},
    )
    assert role_options(from_files, "scheduler") == role_options(security, "scheduler")


def test_job_script_carries_worker_tls_config_that_dask_reads_back():
    security = Security.temporary()
    with pytest.warns(InlineKeyWarning, match="readable by whoever reads the script"):
        job = SLURMJob("tls://10.0.0.1:8786", "w", cores=1, memory="1GiB", security=security)
    (line,) = [line for line in job.job_script().splitlines() if line.startswith("export ")]
    name, _, value = line.removeprefix("export ").partition("=")
    config = dask.config.collect_env({name: shlex.split(value)[0]})
    tls = config["distributed"]["comm"]["tls"]
    assert config["distributed"]["comm"]["require-encryption"] is True
    assert tls["ca-file"] == security.tls_ca_file and tls["worker"]["key"] == security.tls_worker_key
    assert "scheduler" not in tls, "workers get their own key, nothing else"
    assert worker_environment(security).keys() == {name}


def test_htcondor_refuses_tls_instead_of_showing_the_key_to_the_pool():
    with pytest.raises(ValueError, match="condor_q"):
        HTCondorJob(None, "w", cores=1, memory="1GiB", security=Security.temporary())


def test_scheduler_placement_is_checked():
    with pytest.raises(ValueError, match="'client' or 'login'"):
        SLURMCluster(cores=1, memory="1GiB", scheduler_on="laptop")
    with pytest.raises(ValueError, match="ssh="):
        SLURMCluster(cores=1, memory="1GiB", scheduler_on="login")


def test_detach_needs_the_login_node_or_a_job_and_tls():
    with pytest.raises(ValueError, match="detach=True with scheduler_on='client'"):
        SLURMCluster(cores=1, memory="1GiB", detach=True)
    with pytest.raises(ValueError, match="always uses TLS"):
        SLURMCluster(cores=1, memory="1GiB", detach=True, scheduler_on="login", security=False)
    with pytest.raises(ValueError, match="idle_timeout must be at least 15 s"):
        SLURMCluster(cores=1, memory="1GiB", detach=True, scheduler_on="login", idle_timeout="5s")


def test_the_login_node_side_needs_only_python_and_distributed():
    imports = {line.split()[1] for line in MAIN_SOURCE.splitlines() if line.strip().startswith(("import ", "from "))}
    assert imports <= {
        "asyncio",
        "contextlib",
        "hashlib",
        "json",
        "os",
        "shutil",
        "signal",
        "subprocess",
        "sys",
        "threading",
        "time",
        "shlex",
        "click",  # distributed's own dependency
        ".session_keeper",  # imported only as a module of jqref: its source is sent ahead
        "distributed",
        "distributed.diagnostics.plugin",
        "distributed.security",
        "distributed.utils",
    }
    compile(MAIN_SOURCE, "login_scheduler_main", "exec")


#: Run by another user with the system's Python (it cannot reach this one's):
#: what a Dask scheduler tells a peer that brings no credential, and whether
#: the workers' key can be read.
OTHER_USER_PROBE = """
import socket, ssl, sys
host, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
heard = {}
with socket.create_connection((host, port), timeout=3) as plain:
    try:
        heard["plain"] = plain.recv(64)
    except OSError:
        heard["plain"] = b""
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
try:
    with context.wrap_socket(socket.create_connection((host, port), timeout=3)) as tls:
        tls.sendall(b"hello")
        heard["tls"] = tls.recv(64)
except (OSError, ssl.SSLError):
    heard["tls"] = b""
try:
    open(key).read()
    heard["key"] = b"read"
except OSError:
    heard["key"] = b""
print(repr({k: bool(v) for k, v in heard.items()}))
"""


@pytest.mark.parametrize("cluster_cls", [SLURMCluster, HTCondorCluster])
def test_another_user_of_this_machine_gets_nothing_from_a_default_cluster(cluster_cls, tmp_path, monkeypatch):
    """The measurement of issue #24, by a real second user (nobody): a
    default cluster's scheduler says nothing to a peer without the cluster's
    certificate, and the workers' key cannot be read."""
    if os.geteuid() != 0:
        pytest.skip("running a command as another user (nobody) needs root, which CI has")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    tmp_path.chmod(0o755)  # as a home usually is: the credentials' own modes must keep them
    with cluster_cls(cores=1, memory="1GiB", scheduler_options={"dashboard_address": ":0"}) as cluster:
        host, port = cluster.scheduler.listen_address.partition("://")[2].rsplit(":", 1)
        assert host not in ("", "0.0.0.0", "::"), "the scheduler listens on every interface"
        key = re.search(r"--tls-key\s+'*([^\s';\"]+)", cluster.job_script())[1]
        probe = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                OTHER_USER_PROBE,
                host,
                port,
                key,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == repr({"plain": False, "tls": False, "key": False})


def test_a_client_holding_only_the_workers_credentials_is_refused(tmp_path, monkeypatch):
    """The files a job script names are a worker's, not a client's: copied out,
    they cannot register a client or run code on the scheduler."""
    from distributed import Client

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with SLURMCluster(cores=1, memory="1GiB", scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
        ca, cert, key = (
            re.search(rf"{flag}\s+'*([^\s';\"]+)", script)[1] for flag in ("--tls-ca-file", "--tls-cert", "--tls-key")
        )
        as_worker = Security(require_encryption=True, tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key)
        with pytest.raises(Exception, match="worker"):
            Client(cluster.scheduler_address, security=as_worker, timeout="10s")
        with Client(cluster) as owner:
            assert owner.run_on_scheduler(os.getpid) == os.getpid()
