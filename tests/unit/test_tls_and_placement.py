"""TLS material for workers, and the scheduler placement option."""

import pathlib
import re
import shlex
import warnings

import dask.config
import pytest
from distributed.security import Security

from jqref import HTCondorCluster, HTCondorJob, SLURMCluster
from jqref.login_scheduler import MAIN_SOURCE
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
def test_the_workers_credentials_are_private_files_the_job_script_names_and_close_removes(cluster_cls, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with cluster_cls(cores=1, memory="1GiB", scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
        assert cluster.scheduler_address.startswith("tls://")
        assert "PRIVATE KEY" not in script and "DASK_INTERNAL_INHERIT_CONFIG" not in script
        directory = tmp_path / ".jqref" / "credentials"
        files = {flag: pathlib.Path(re.search(rf"{flag}\s+'*([^\s';\"]+)", script)[1])
                 for flag in ("--tls-ca-file", "--tls-cert", "--tls-key")}
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
    from_files = Security(require_encryption=True, **{f: str(tmp_path / f) for f in
                                                     ("tls_ca_file", "tls_scheduler_cert", "tls_scheduler_key")})
    assert role_options(from_files, "scheduler") == role_options(security, "scheduler")


def test_job_script_carries_worker_tls_config_that_dask_reads_back():
    security = Security.temporary()
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


def test_detach_needs_the_login_node_and_tls():
    with pytest.raises(ValueError, match="needs scheduler_on='login'"):
        SLURMCluster(cores=1, memory="1GiB", detach=True)
    with pytest.raises(ValueError, match="always uses TLS"):
        SLURMCluster(cores=1, memory="1GiB", detach=True, scheduler_on="login", security=False)
    with pytest.raises(ValueError, match="idle_timeout must be at least 15 s"):
        SLURMCluster(cores=1, memory="1GiB", detach=True, scheduler_on="login", idle_timeout="5s")


def test_the_login_node_side_needs_only_python_and_distributed():
    imports = {line.split()[1] for line in MAIN_SOURCE.splitlines() if line.strip().startswith(("import ", "from "))}
    assert imports <= {"asyncio", "contextlib", "hashlib", "json", "os", "shutil", "signal", "subprocess", "sys", "threading", "time",
                       "distributed", "distributed.diagnostics.plugin", "distributed.security"}
    compile(MAIN_SOURCE, "login_scheduler_main", "exec")
