"""TLS material for workers, and the scheduler placement option."""

import shlex
import warnings

import dask.config
import pytest
from distributed.security import Security

from jqref import HTCondorCluster, HTCondorJob, SLURMCluster
from jqref.login_scheduler import MAIN_SOURCE
from jqref.slurm import SLURMJob
from jqref.tls import InsecureSchedulerWarning, cluster_security, role_options, worker_environment


def test_true_makes_a_certificate_for_this_cluster_alone():
    first, second = cluster_security(True), cluster_security(True)
    assert first.require_encryption and first.tls_ca_file != second.tls_ca_file
    assert cluster_security(None) is None and cluster_security(False) is None


def test_a_scheduler_on_a_shared_login_node_gets_tls_by_default():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cluster_security(None, shared_host=True).require_encryption
        assert cluster_security(None) is None  # the scheduler in this process


def test_declining_tls_on_a_shared_login_node_is_warned_about_with_the_reason():
    with pytest.warns(InsecureSchedulerWarning, match=r"security=False.*run code as you"):
        assert cluster_security(False, shared_host=True) is None
    with pytest.warns(InsecureSchedulerWarning, match="condor_q -long"):
        assert cluster_security(None, shared_host=True, tls_unavailable=HTCondorJob.tls_unavailable) is None


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
    with pytest.raises(ValueError, match="detach=True needs TLS, which htcondor cannot carry"):
        HTCondorCluster(cores=1, memory="1GiB", detach=True, scheduler_on="login", ssh="login", python="python3")


def test_the_login_node_side_needs_only_python_and_distributed():
    imports = {line.split()[1] for line in MAIN_SOURCE.splitlines() if line.strip().startswith(("import ", "from "))}
    assert imports <= {"asyncio", "contextlib", "hashlib", "json", "os", "shutil", "subprocess", "sys", "threading", "time",
                       "distributed", "distributed.diagnostics.plugin", "distributed.security"}
    compile(MAIN_SOURCE, "login_scheduler_main", "exec")
