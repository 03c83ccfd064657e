"""HTCondor: the submit description, its quoting, job ids and states."""

import shlex

import pytest

from jqref import CommandError, CommandResult, JobState
from jqref.htcondor import HTCondorJob, _seconds

HOSTILE = ["two words", "it's", 'say "hi"', "$(HOME)", "$$(x)", "`id`", "a;b|c&&d", "''\"\"", "tail\\"]


def condor_words(text: str) -> list[str]:
    """Read the new arguments/environment syntax back, as the manual
    describes it: double-quoted as a whole, "" is a literal double quote,
    words split on spaces unless single-quoted, '' inside single quotes is a
    literal single quote. $(DOLLAR) is the submit language's literal $."""
    assert text[0] == text[-1] == '"'
    text = text[1:-1].replace('""', '"').replace("$(DOLLAR)", "$")
    words, word, quoted, i, started = [], "", False, 0, False
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "'" and text[i + 1:i + 2] == "'":
                word += "'"
                i += 1
            elif c == "'":
                quoted = False
            else:
                word += c
        elif c == "'":
            quoted, started = True, True
        elif c == " ":
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + c, True
        i += 1
    if started:
        words.append(word)
    return words


def job(**kwargs):
    kwargs.setdefault("cores", 2)
    kwargs.setdefault("memory", "1GiB")
    return HTCondorJob("tcp://10.0.0.1:8786", kwargs.pop("name", "w-0"), **kwargs)


def description(j):
    lines = j.job_script().splitlines()
    assert lines[-1] == "queue"
    return dict(line.split(" = ", 1) for line in lines[:-1])


def test_resources_walltime_and_logs():
    d = description(job(cores=2, memory="3GiB", disk="2GiB", walltime="01:00:00", log_directory="/logs",
                        job_name="jn", account="grp"))
    assert d["request_cpus"] == "2" and d["request_memory"] == "3072" and d["request_disk"] == str(2 * 1024 * 1024)
    assert d["allowed_job_duration"] == "3600" and d["accounting_group"] == "grp" and d["batch_name"] == "jn"
    assert d["output"] == "/logs/jn-$(ClusterId).$(ProcId).out"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_reach_the_job_unchanged(value):
    d = description(job(name=value, job_name="n", environment={"V": value},
                        job_script_prologue=[f"echo {shlex.quote(value)}"]))
    interpreter, *rest = condor_words(d["arguments"])
    assert [d["executable"], interpreter] == ["/usr/bin/env", "bash"]
    flag, body = rest
    assert flag == "-c"
    commands = body.split("; ")
    assert shlex.split(commands[0]) == ["echo", value]
    worker = shlex.split(commands[-1])
    assert worker[worker.index("--name") + 1] == value
    assert condor_words(d["environment"]) == [f"V={value}"]


def test_names_keep_dollar_signs_literal():
    assert description(job(job_name="a $(b) $$(c)"))["batch_name"] == "a $(DOLLAR)(b) $(DOLLAR)$(DOLLAR)(c)"


def test_extra_directives_are_a_dict_and_skip_applies():
    d = description(job(job_extra_directives={"+ProjectName": '"p"', "requirements": "True"}, job_directives_skip=["request_disk"]))
    assert d["+ProjectName"] == '"p"' and d["requirements"] == "True"
    with pytest.raises(TypeError, match="dict"):
        job(job_extra_directives=["requirements = True"])


def test_refused_input():
    with pytest.raises(ValueError, match="no queues"):
        job(queue="short")
    with pytest.raises(ValueError, match="single line"):
        job(job_name="a\nqueue 100")


def test_submission_reads_stdin():
    assert job().submit_argv() == ["condor_submit", "-terse", "-"]
    assert job(submit_command_extra=["-name", "schedd"]).submit_argv() == ["condor_submit", "-terse", "-name", "schedd", "-"]


def test_job_id_and_walltime_parsing():
    assert HTCondorJob.parse_job_id("15.0 - 15.0\n") == "15.0"
    with pytest.raises(ValueError):
        HTCondorJob.parse_job_id("Submitting job(s).\n")
    assert [_seconds(w) for w in ("00:07:00", "7:00", "420", 420)] == [420] * 4


def test_states_from_condor_q():
    out = "1 0 1\n2 0 2\n3 0 3\n4 0 4\n5 0 5\n6 0 6\n7 0 7\n"
    states = HTCondorJob.parse_states(CommandResult(("condor_q",), 0, out, ""), [])
    assert {k: v[0] for k, v in states.items()} == {
        "1.0": JobState.PENDING, "2.0": JobState.RUNNING, "3.0": JobState.ENDED, "4.0": JobState.ENDED,
        "5.0": JobState.HELD, "6.0": JobState.RUNNING, "7.0": JobState.RUNNING,
    }


def test_failed_condor_q_is_an_error_and_rm_of_gone_jobs_is_not():
    with pytest.raises(CommandError):
        HTCondorJob.parse_states(CommandResult(("condor_q",), 1, "", "-- Failed to fetch ads from: <...> : login"), [])
    assert HTCondorJob.already_gone(CommandResult(("condor_rm",), 1, "", "\nJob 99.0 not found\n"))
