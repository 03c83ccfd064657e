"""Every option is checked when the job or cluster is made (issue #23).

A corpus of wrong and hostile values, each tried as a keyword argument and
as a dask config value on every scheduler: each must be refused at once,
with an error that names the option and the value and says what the option
accepts (each case's fragment of it). A second table holds values that must still be
accepted, as dask-jobqueue's users write them. Jobs are made without a
scheduler (as a cluster makes its template job); the cluster's own keywords
are tried on the cluster classes, which refuse them before starting.
"""

from __future__ import annotations

import math
import pathlib
import warnings

import dask.config
import paramiko
import pytest

from jqref import HTCondorCluster, PBSCluster, SGECluster, SLURMCluster
from jqref.config import DEFAULTS, config_key
from jqref.option_checks import (
    CLUSTER_KEYWORDS,
    OPTIONS,
    IgnoredValuesWarning,
    InvalidOptionError,
    check,
    check_keywords,
    checks_for,
)
from jqref.ssh_config import _split_destination, hops_to

CLUSTERS = {"slurm": SLURMCluster, "sge": SGECluster, "htcondor": HTCondorCluster, "pbs": PBSCluster}
SCHEDULERS = list(CLUSTERS)
#: The size every case starts from; a case may replace either.
BASE = {"cores": 2, "memory": "2GiB"}

#: What a refusal says the option accepts, by the kind of mistake.
WHOLE = "whole number"
TIME = "time limit"
DURATION = "a duration"
FLAG = "True or False"
LINE = "single line"

#: (option, wrong value, fragment of the error) refused on every scheduler.
BAD = [
    ("cores", 2.5, WHOLE),
    ("cores", 0, "at least 1"),
    ("cores", -4, "at least 1"),
    ("cores", "4", "(a str)"),
    ("cores", True, "(a bool)"),
    ("cores", 4.0, "(a float)"),
    ("cores", [4], "(a list)"),
    ("cores", "", "(a str)"),
    ("memory", 4, "(4 bytes)"),
    ("memory", "4", "(4 bytes)"),
    ("memory", "lots", "not a size"),
    ("memory", "-4GB", "bytes"),
    ("memory", "0 B", "(0 bytes)"),
    ("memory", True, "(a bool)"),
    ("memory", math.nan, "not a size"),
    ("memory", math.inf, "not a size"),
    ("memory", "2 EB", "1 PiB"),
    ("memory", ["4GB"], "(a list)"),
    ("memory", "4 GiB\n#SBATCH --x", "not a size"),
    ("processes", 0, "at least 1"),
    ("processes", -1, "at least 1"),
    ("processes", 1.5, "(a float)"),
    ("processes", "2", "(a str)"),
    ("processes", False, "(a bool)"),
    ("processes", 3, "between 1 and cores"),
    ("processes", "", "(a str)"),
    ("nanny", "no", FLAG),
    ("nanny", "False", FLAG),
    ("nanny", 0, FLAG),
    ("nanny", 1, "(an int)"),
    ("nanny", [], FLAG),
    ("walltime", "-1", TIME),
    ("walltime", "0", "more than 0"),
    ("walltime", "00:00:00", "more than 0"),
    ("walltime", 0, "more than 0"),
    ("walltime", -5, TIME),
    ("walltime", "1h", TIME),
    ("walltime", "01:00:00,mem=100gb", TIME),
    ("walltime", "1:2:3:4", TIME),
    ("walltime", 3600.0, "(a float)"),
    ("walltime", "UNLIMITED", TIME),
    ("walltime", True, "(a bool)"),
    ("walltime", "01:00:00\nx", TIME),
    ("walltime", " 01:00:00", TIME),
    ("death_timeout", 0, "more than 0"),
    ("death_timeout", -1, "more than 0"),
    ("death_timeout", "-1", DURATION),
    ("death_timeout", "soon", "not a duration"),
    ("death_timeout", True, "(a bool)"),
    ("death_timeout", [60], "(a list)"),
    ("death_timeout", math.inf, DURATION),
    ("cancel_grace_period", -1, "at least 0 s"),
    ("cancel_grace_period", "a while", "not a duration"),
    ("cancel_grace_period", True, "(a bool)"),
    ("lifetime_margin", -1, "at least 0 s"),
    ("lifetime_margin", "soon", "not a duration"),
    ("poll_interval", 0, "at least 0.1 s"),
    ("poll_interval", "1ms", "at least 0.1 s"),
    ("poll_interval", -1, DURATION),
    ("poll_interval", "fast", "not a duration"),
    ("poll_interval", True, "(a bool)"),
    ("idle_timeout", 0, "more than 0"),
    ("idle_timeout", "never", "not a duration"),
    ("idle_timeout", False, "(a bool)"),
    ("max_jobs", 0, "at least 1"),
    ("max_jobs", -1, "at least 1"),
    ("max_jobs", 1.5, "(a float)"),
    ("max_jobs", "10", "(a str)"),
    ("max_jobs", True, "(a bool)"),
    ("max_jobs", "", "(a str)"),
    ("max_array_size", 0, "at least 1"),
    ("max_array_size", 2.5, "(a float)"),
    ("max_array_size", "10", "(a str)"),
    ("arrays", "no", FLAG),
    ("arrays", 1, FLAG),
    ("detach", "yes", FLAG),
    ("detach", 1, FLAG),
    ("scheduler_on", "laptop", "'client' or 'login'"),
    ("scheduler_on", "LOGIN", "'client' or 'login'"),
    ("scheduler_on", 1, "'client' or 'login'"),
    ("scheduler_on", "", "'client' or 'login'"),
    ("scheduler_job", {"nodes": 2}, "the key 'nodes'"),
    ("scheduler_job", {"cores": "two"}, "'cores' must be a whole number of cores"),
    ("scheduler_job", {"memory": "lots"}, "'memory' must be a size"),
    ("scheduler_job", "1 core", "(a str)"),
    ("worker_extra_args", "--foo", "a single string; as a list: ['--foo']"),
    ("worker_extra_args", ["--nthreads", 2], "the item 2 is an int"),
    ("worker_extra_args", ["a\nb"], "line break"),
    ("worker_extra_args", 5, "(an int)"),
    ("worker_extra_args", {"--foo": 1}, "(a dict)"),
    ("job_script_prologue", "module load x", "a single string"),
    ("job_script_prologue", [None], "is a NoneType"),
    ("job_script_prologue", ["a\nb"], "line break"),
    ("job_script_epilogue", "echo done", "a single string"),
    ("job_script_epilogue", [3], "is an int"),
    ("job_directives_skip", "--time", "a single string"),
    ("job_directives_skip", [1], "is an int"),
    ("submit_command_extra", "-q x", "a single string"),
    ("submit_command_extra", [1], "is an int"),
    ("cancel_command_extra", "-v", "a single string"),
    ("cancel_command_extra", ("-v", None), "is a NoneType"),
    ("extra", "--foo", "a single string"),
    ("env_extra", "module load x", "a single string"),
    ("header_skip", "--time", "a single string"),
    ("job_name", "a\nb", LINE),
    ("job_name", "", "empty"),
    ("job_name", 5, "(an int)"),
    ("job_name", ["x"], "(a list)"),
    ("job_name", "a\x00b", "control character"),
    ("job_name", " ", "blank"),
    ("python", "a\nb", LINE),
    ("python", 3, "(an int)"),
    ("python", ["python3"], "(a list)"),
    ("worker_command", "", "empty"),
    ("worker_command", "a\nb", "module's name"),
    ("worker_command", 5, "(an int)"),
    ("worker_command", "0", "module's name"),
    ("worker_command", "-m distributed", "module's name"),
    ("worker_command", "distributed/cli", "module's name"),
    ("interface", "eth 0", "one word"),
    ("interface", 0, "(an int)"),
    ("interface", "ib0\n", "one word"),
    ("protocol", "tcp:", "'tcp://'"),
    ("protocol", "TCP://", "'tcp://'"),
    ("protocol", 5, "(an int)"),
    ("protocol", "tcp ://", "'tcp://'"),
    ("protocol", "inproc://", "'tcp://'"),
    ("protocol", "udp", "'tls://'"),
    ("local_directory", "a\nb", LINE),
    ("local_directory", "  ", "blank"),
    ("local_directory", 5, "(an int)"),
    ("local_directory", ["/tmp"], "(a list)"),
    ("log_directory", 5, "(an int)"),
    ("log_directory", "a\rb", LINE),
    ("shared_temp_directory", 5, "(an int)"),
    ("shared_temp_directory", "a\nb", LINE),
    ("shebang", "bash", "starting with #!"),
    ("shebang", "#!", "starting with #!"),
    ("shebang", "", "empty"),
    ("shebang", 5, "(an int)"),
    ("shebang", "#!/bin/bash\nrm -rf ~", "line break"),
    ("queue", "a\nb", LINE),
    ("queue", 2.5, "(a float)"),
    ("queue", True, "(a bool)"),
    ("queue", ["a", "b"], "(a list)"),
    ("queue", " ", "blank"),
    ("account", "a\nb", LINE),
    ("account", 1.5, "(a float)"),
    ("account", ["a", "b"], "(a list)"),
    ("account", False, "(a bool)"),
    ("scheduler_options", "host=x", "(a str)"),
    ("scheduler_options", {"dashboard address": 1}, "the key"),
    ("scheduler_options", {1: 2}, "the key 1"),
    ("scheduler_options", {"port": 70000}, "'port' must be a port number"),
    ("scheduler_options", {"port": "8786"}, "from 0 to 65535"),
]

#: (scheduler, option, wrong value, fragment): what one scheduler's own options refuse.
BAD_OWN = [
    ("slurm", "job_cpu", 0, "at least 1"),
    ("slurm", "job_cpu", 2.5, "(a float)"),
    ("slurm", "job_cpu", "4", "(a str)"),
    ("slurm", "job_cpu", True, "(a bool)"),
    ("slurm", "job_cpu", "", "(a str)"),
    ("slurm", "job_mem", "4 GB", "--mem"),
    ("slurm", "job_mem", -1, "--mem"),
    ("slurm", "job_mem", "1.5G", "--mem"),
    ("slurm", "job_mem", 1.5, "(a float)"),
    ("slurm", "job_mem", "lots", "--mem"),
    ("slurm", "job_mem", "\uff14\uff10\uff10\uff10", "--mem"),
    ("slurm", "walltime", "1-2-3", TIME),
    ("slurm", "walltime", "-1", TIME),
    ("slurm", "walltime", "0-00:00", "more than 0"),
    ("slurm", "walltime", "\uff11:00:00", TIME),
    ("slurm", "walltime", "INFINITE", TIME),
    ("sge", "pe", "two words", "one word"),
    ("sge", "pe", 5, "(an int)"),
    ("sge", "pe", "a\nb", "one word"),
    ("sge", "memory_resource", "mem free", "resource name"),
    ("sge", "memory_resource", "1mem", "resource name"),
    ("sge", "memory_resource", 5, "(an int)"),
    ("sge", "resource_spec", "a\nb", LINE),
    ("sge", "resource_spec", 5, "(an int)"),
    ("sge", "walltime", "2-00:00:00", TIME),
    ("htcondor", "disk", "4", "(4 bytes)"),
    ("htcondor", "disk", "lots", "not a size"),
    ("htcondor", "disk", -1, "bytes"),
    ("htcondor", "disk", True, "(a bool)"),
    ("htcondor", "environment", "A=1", "(a str)"),
    ("htcondor", "environment", {"A B": "1"}, "the key 'A B'"),
    ("htcondor", "environment", {"A": None}, "NoneType"),
    ("htcondor", "environment", {"A": ["x"]}, "is a list"),
    ("htcondor", "environment", {"A": "a\nb"}, "line break"),
    ("htcondor", "environment", {"A": True}, "a bool"),
    ("htcondor", "job_extra_directives", ["+A = 1"], "(a list)"),
    ("htcondor", "job_extra_directives", "x", "(a str)"),
    ("htcondor", "job_extra_directives", {"a b": 1}, "the key"),
    ("htcondor", "job_extra_directives", {"+A": None}, "NoneType"),
    ("htcondor", "job_extra_directives", {"+A": "a\nb"}, "line break"),
    ("htcondor", "walltime", "2-00:00:00", TIME),
    ("htcondor", "walltime", "-1", TIME),
    ("pbs", "resource_type", "chunks", "'select' or 'nodes'"),
    ("pbs", "resource_type", "", "'select' or 'nodes'"),
    ("pbs", "resource_type", 1, "'select' or 'nodes'"),
    ("pbs", "resource_spec", "a\nb", LINE),
    ("pbs", "resource_spec", 5, "(an int)"),
    ("pbs", "walltime", "2-00:00:00", TIME),
    ("pbs", "walltime", "00:00:00.0", "more than 0"),
    ("slurm", "walltime", "01:00:00.5", TIME),
    # HTCondor's walltime has no default: '' is none there, as everywhere an option's default is none.
    *[(s, "walltime", "", TIME) for s in ("slurm", "sge", "pbs")],
    *[
        (s, "project", value, fragment)
        for s in ("slurm", "sge", "pbs")
        for value, fragment in [("a\nb", LINE), (2.5, "(a float)")]
    ],
    *[
        (s, "job_extra_directives", value, fragment)
        for s in ("slurm", "sge", "pbs")
        for value, fragment in [
            ("--exclusive", "a single string"),
            ([1], "is an int"),
            (["--x\nrm -rf /"], "line break"),
            (7, "(an int)"),
        ]
    ],
]

#: Read only by the cluster (a job alone never reads these from the config).
CLUSTER_ONLY = {
    "poll_interval",
    "max_jobs",
    "scheduler_on",
    "scheduler_job",
    "detach",
    "idle_timeout",
    "scheduler_options",
}

#: (keyword, wrong value, fragment) of the cluster's keywords that no config section holds.
BAD_SSH = [
    ("user@@host", "an empty part between @s"),
    ("@host", "an empty user"),
    ("host:70000", "not from 1 to 65535"),
    ("host:0", "not from 1 to 65535"),
    ("host:", "the port ''"),
    ("host:abc", "the port 'abc'"),
    ("", "empty"),
    ("login node", "whitespace"),
    ("-oProxyCommand=x", "the host"),
    (22, "(an int)"),
    ("ssh://", "empty"),
    ("user@", "no host"),
    ("user@:22", "no host"),
    ("a/b", "the host"),
    ("[::1]:99999", "not from 1 to 65535"),
]
BAD_CLUSTER_KEYWORDS = [
    ("n_workers", -1, "at least 0"),
    ("n_workers", 2.5, "(a float)"),
    ("n_workers", "2", "(a str)"),
    ("n_workers", True, "(a bool)"),
    ("name", "a\nb", LINE),
    ("name", 5, "(an int)"),
    ("scheduler_options", ["host", "x"], "(a list)"),
    ("asynchronous", "no", FLAG),
    *[("ssh", value, fragment) for value, fragment in BAD_SSH],
]

#: (option, value) accepted on every scheduler.
GOOD = [
    ("cores", 1),
    ("cores", 64),
    ("memory", "1 MiB"),
    ("memory", "4GB"),
    ("memory", "28MiB"),
    ("memory", 2**30),
    ("memory", 4e9),
    ("memory", "1.5GB"),
    ("processes", 1),
    ("processes", 2),
    ("nanny", True),
    ("nanny", False),
    ("walltime", "01:30:00"),
    ("walltime", "30:00"),
    ("walltime", "90"),
    ("walltime", 3600),
    ("walltime", "00:02"),
    ("death_timeout", 60),
    ("death_timeout", "60s"),
    ("death_timeout", "5 minutes"),
    ("death_timeout", 0.5),
    ("cancel_grace_period", 0),
    ("cancel_grace_period", "30s"),
    ("lifetime_margin", 0),
    ("lifetime_margin", "10 minutes"),
    ("poll_interval", "100ms"),
    ("poll_interval", 5),
    ("idle_timeout", "1 hour"),
    ("max_jobs", 1),
    ("max_array_size", 1),
    ("arrays", False),
    ("detach", False),
    ("scheduler_on", "client"),
    ("scheduler_job", {"cores": 2, "memory": "4GiB", "walltime": "08:00:00", "queue": "long"}),
    ("worker_extra_args", []),
    ("worker_extra_args", ["--lifetime", "55m"]),
    ("worker_extra_args", ("--resources GPU=2",)),
    ("job_directives_skip", {"--mem"}),
    ("job_script_prologue", ["module load python", "source env/bin/activate"]),
    ("job_script_epilogue", ["echo $?"]),
    ("submit_command_extra", ["-v"]),
    ("cancel_command_extra", []),
    ("queue", ""),
    ("account", "proj"),
    ("account", 1234),
    ("account", ["proj"]),
    ("account", []),
    ("account", ""),
    ("interface", "ib0"),
    ("interface", ""),
    ("protocol", "tcp://"),
    ("protocol", "tls://"),
    ("protocol", "ucx://"),
    ("protocol", "tcp"),
    ("local_directory", "$TMPDIR"),
    ("local_directory", pathlib.Path("/tmp/x")),
    ("log_directory", pathlib.Path("logs")),
    ("python", "/usr/bin/python3"),
    ("python", pathlib.Path("/usr/bin/python3")),
    ("python", "python3 -X dev"),
    ("shebang", "#!/bin/bash"),
    ("shebang", "#! /usr/bin/env bash"),
    ("job_name", "jq-1"),
    ("scheduler_options", {"dashboard_address": ":0"}),
    ("scheduler_options", {"port": 0}),
    ("worker_command", "distributed.cli.dask_worker"),
    ("worker_command", "dask_cuda.cli worker"),
    ("shared_temp_directory", "/scratch/shared"),
    ("death_timeout", None),
]
GOOD_OWN = [
    ("slurm", "walltime", "2-00:00:00"),
    ("slurm", "walltime", "1-12"),
    ("slurm", "walltime", 90),
    ("slurm", "job_cpu", 4),
    ("slurm", "job_mem", "4000"),
    ("slurm", "job_mem", 0),
    ("slurm", "job_mem", "16G"),
    ("slurm", "job_mem", "16GB"),
    ("slurm", "job_mem", "16GiB"),
    ("slurm", "queue", "debug"),
    ("slurm", "job_extra_directives", ["--exclusive"]),
    ("sge", "pe", "smp"),
    ("sge", "memory_resource", "mem_free"),
    ("sge", "resource_spec", "h_vmem=12G"),
    ("sge", "queue", "all.q"),
    ("htcondor", "disk", "1GiB"),
    ("htcondor", "environment", {"A": 1, "B": "x y"}),
    ("htcondor", "job_extra_directives", {"+ProjectName": '"x"', "request_gpus": 1, "stream_output": True}),
    ("htcondor", "job_extra_directives", []),
    ("pbs", "resource_type", "nodes"),
    ("pbs", "resource_spec", "select=1:ncpus=24:mem=100GB"),
    ("pbs", "queue", "workq@server"),
    ("pbs", "walltime", "01:00:00.5"),
]


def make_job(scheduler, **options):
    """A job as a cluster makes its template: every option read, the script rendered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecated names
        return CLUSTERS[scheduler].job_cls("tcp://10.0.0.1:8786", "w-0", **{**BASE, **options})


def refusal(make) -> str:
    """The message `make()` is refused with; a failure if it is accepted."""
    try:
        made = make()
    except (ValueError, TypeError) as e:
        return str(e)
    close = getattr(made, "close", None)
    if close is not None:
        close()
    pytest.fail("accepted")


def assert_names_it(message: str, option: str, value, fragment: str, where: str = ""):
    assert message.startswith(f"{option} must be ") or message.startswith(f"{option}={value!r} "), message
    assert repr(value) in message or (isinstance(value, str) and value in message), message
    assert fragment in message, message
    assert where in message, message


def config_value(option: str, value, scheduler: str) -> dict:
    return {f"jqref.{scheduler}.{config_key(option)}": value}


def cases(table):
    """Test ids `option=value` (`scheduler-option=value`)."""
    return [pytest.param(*case, id="-".join(map(str, case[:-3])) + f"{case[-3]}={case[-2]!r}") for case in table]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("option, value, fragment", cases(BAD))
def test_a_wrong_keyword_is_refused_naming_it(scheduler, option, value, fragment):
    message = refusal(lambda: make_job(scheduler, **{option: value}))
    assert_names_it(message, option, value, fragment)


@pytest.mark.parametrize("scheduler, option, value, fragment", cases(BAD_OWN))
def test_a_wrong_keyword_of_a_scheduler_of_its_own_is_refused_naming_it(scheduler, option, value, fragment):
    message = refusal(lambda: make_job(scheduler, **{option: value}))
    assert_names_it(message, option, value, fragment)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize(
    "option, value, fragment",
    cases([case for case in BAD if case[0] not in CLUSTER_ONLY and case[2] != "between 1 and cores"]),
)
def test_a_wrong_config_value_is_refused_naming_the_option_and_the_key(scheduler, option, value, fragment):
    with dask.config.set(config_value(option, value, scheduler)):
        message = refusal(lambda: make_job(scheduler, **{option: None}))  # None: not given, the config is read
    assert_names_it(message, option, value, fragment, f"(dask config jqref.{scheduler}.{config_key(option)})")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("option, value, fragment", cases([case for case in BAD if case[0] in CLUSTER_ONLY]))
def test_the_clusters_options_are_refused_when_it_is_made(scheduler, option, value, fragment):
    if option != "scheduler_options":  # given, it is one of the keywords check_keywords is for
        message = refusal(lambda: CLUSTERS[scheduler](**BASE, **{option: value}))
        assert_names_it(message, option, value, fragment)
    with dask.config.set(config_value(option, value, scheduler)):
        message = refusal(lambda: CLUSTERS[scheduler](**BASE))
    assert_names_it(message, option, value, fragment, f"(dask config jqref.{scheduler}.{config_key(option)})")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("value, fragment", [pytest.param(*case, id=repr(case[0])) for case in BAD_SSH])
def test_an_ssh_destination_is_read_strictly_when_the_cluster_is_made(scheduler, value, fragment):
    message = refusal(lambda: CLUSTERS[scheduler](**BASE, ssh=value, python="python3"))
    assert_names_it(message, "ssh", value, fragment)


@pytest.mark.parametrize("option, value, fragment", cases(BAD_CLUSTER_KEYWORDS))
def test_the_cluster_keywords_no_section_holds_are_checked(option, value, fragment):
    # check_keywords is for JobQueueCluster's own keywords, which no Options resolves.
    message = refusal(lambda: check_keywords(**{option: value}))
    assert_names_it(message, option, value, fragment)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("option, value", [pytest.param(*case, id=f"{case[0]}={case[1]!r}") for case in GOOD])
def test_good_values_are_accepted(scheduler, option, value):
    make_job(scheduler, **{option: value}).job_script()


@pytest.mark.parametrize("scheduler, option, value", [pytest.param(*c, id=f"{c[0]}-{c[1]}={c[2]!r}") for c in GOOD_OWN])
def test_good_values_of_a_schedulers_own_options_are_accepted(scheduler, option, value):
    make_job(scheduler, **{option: value}).job_script()


@pytest.mark.parametrize(
    "destination, parsed",
    [
        ("login", (None, "login", None)),
        ("alice@login", ("alice", "login", None)),
        ("alice@login:2222", ("alice", "login", 2222)),
        ("ssh://alice@login:22", ("alice", "login", 22)),
        ("[::1]:2222", (None, "::1", 2222)),
        ("fe80::1", (None, "fe80::1", None)),
        ("alice@corp.example@login", ("alice@corp.example", "login", None)),
    ],
)
def test_good_ssh_destinations_parse(destination, parsed):
    assert _split_destination(destination) == parsed
    check_keywords(ssh=destination)


def test_the_ssh_config_is_read_strictly_too():
    config = paramiko.SSHConfig.from_text("Host a\n  ProxyJump x@@y\nHost b\n  Port 70000\n")
    assert_names_it(
        refusal(lambda: hops_to("a", config)), "ProxyJump", "x@@y", "empty part", "(ssh config, on the way to a)"
    )
    assert_names_it(refusal(lambda: hops_to("b", config)), "Port", "70000", "from 1 to 65535", "(ssh config, Host b)")


def test_accepted_values_mean_what_they_say():
    script = make_job("slurm", account=1234, queue="", walltime=90, job_mem=0, processes=None).job_script()
    assert "#SBATCH -A 1234" in script and "#SBATCH -p" not in script
    assert "#SBATCH -t 90" in script and "#SBATCH --mem=0" in script
    assert "#PBS -A proj" in make_job("pbs", account=["proj"]).job_script()
    with dask.config.set({"jqref.slurm.queue": "site-default"}):
        assert "#SBATCH -p" not in make_job("slurm", queue="").job_header  # '' is none, as dask-jobqueue reads it
        assert "#SBATCH -p site-default" in make_job("slurm").job_header
    assert make_job("htcondor", job_extra_directives=[]).job_extra_directives == {}
    assert make_job("slurm", local_directory=pathlib.Path("/tmp/x")).local_directory == "/tmp/x"


def test_a_dict_of_directives_is_read_as_dask_jobqueue_reads_it_with_a_warning_for_its_values():
    with pytest.warns(IgnoredValuesWarning, match=r"'--gres': 'gpu:1'"):
        job = make_job("slurm", job_extra_directives={"--exclusive": None, "--gres": "gpu:1"})
    assert job.job_header.splitlines()[-2:] == ["#SBATCH --exclusive", "#SBATCH --gres"]


def test_refusals_are_value_errors_and_type_errors():
    with pytest.raises(InvalidOptionError) as caught:
        make_job("slurm", cores="4")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, TypeError)


def test_every_option_of_every_section_has_a_declared_kind_its_default_satisfies():
    assert set(OPTIONS) <= set.intersection(*(set(defaults) for defaults in DEFAULTS.values()))
    for section, defaults in DEFAULTS.items():
        kinds = checks_for(section)
        assert set(defaults) == set(kinds), section  # nothing unchecked, no declaration of nothing
        for key, default in defaults.items():
            if default is not None:
                check(key, default, kinds[key])


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_the_corpus_tries_wrong_values_on_every_option(scheduler):
    tried = {config_key(option) for option, _, _ in BAD}
    tried |= {config_key(option) for section, option, _, _ in BAD_OWN if section == scheduler}
    assert set(DEFAULTS[scheduler]) <= tried
    assert set(CLUSTER_KEYWORDS) == {option for option, _, _ in BAD_CLUSTER_KEYWORDS}
