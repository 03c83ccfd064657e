"""HTCondor: the submit description, its quoting, job ids and states.

How condor_submit reads these descriptions (macro expansion, $ runs, a
trailing backslash, batch_name's trimming and unquoting, the array's
$(JqrefWorkerName$(ProcId)), $F(MY.JobId) in log names) was checked with
HTCondor's own submit code, the htcondor Python bindings' Submit.jobs(),
versions 10.0 and 24.12; these tests pin the text that was checked.
"""

import asyncio
import re
import shlex

import pytest

from jqref import BatchQueue, CommandError, CommandResult, JobState
from jqref.htcondor import HTCondorJob, _seconds

from test_batch_queue import ScriptedRunner

HOSTILE = [
    "two words",
    "it's",
    'say "hi"',
    "$(HOME)",
    "$$x",
    "a$$;b",
    "$",
    "x$",
    "$F(y)",
    "`id`",
    "a;b|c&&d",
    "''\"\"",
    "tail\\",
    '"q"',
]


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
            if c == "'" and text[i + 1 : i + 2] == "'":
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


def test_resources_are_the_classads_dask_jobqueue_writes():
    j = job(cores=2, memory="3GiB", disk="2GiB")
    d = description(j)
    assert d["MY.DaskWorkerCores"] == "2"
    assert d["MY.DaskWorkerMemory"] == str(3 * 2**30) and d["MY.DaskWorkerDisk"] == str(2 * 2**30)
    assert d["RequestCpus"] == "MY.DaskWorkerCores"
    assert d["RequestMemory"] == "floor(MY.DaskWorkerMemory / 1048576)"
    assert d["RequestDisk"] == "floor(MY.DaskWorkerDisk / 1024)"
    assert d["MY.JobId"] == '"$(ClusterId).$(ProcId)"'
    assert d["MY.DaskWorkerName"] == '"htcondor--$F(MY.JobId)--"'
    # As dask-jobqueue's: the numbers are ints, bytes (processes do not divide them).
    header = job(cores=4, processes=2, memory="100MB", disk="100MB").job_header_dict
    assert (header["MY.DaskWorkerCores"], header["MY.DaskWorkerMemory"], header["MY.DaskWorkerDisk"]) == (
        4,
        100_000_000,
        100_000_000,
    )
    assert not any(key.startswith(("request_", "Request_")) for key in d)


def test_disk_is_optional_and_checked():
    d = description(job())
    assert "MY.DaskWorkerDisk" not in d and "RequestDisk" not in d
    with pytest.raises(ValueError, match=r"disk must be a size .*got 'lots' \(not a size\)"):
        job(disk="lots")
    with pytest.raises(ValueError, match=r"disk must be a size from 1 MiB .*got '0 B' \(0 bytes\)"):
        job(disk="0 B")


def test_walltime_account_and_tag():
    j = job(walltime="01:00:00", account="grp")
    d = description(j)
    assert d["allowed_job_duration"] == "3600" and d["accounting_group"] == "grp"
    assert d["+JqrefTag"] == f'"{j.tag}"' and d["job_max_vacate_time"] == "30"


def test_logs_are_named_by_job_id_and_streamed():
    d = description(job(log_directory="/logs"))
    assert d["LogDirectory"] == "/logs"
    assert d["Output"] == "$(LogDirectory)/worker-$F(MY.JobId).out"
    assert d["Error"] == "$(LogDirectory)/worker-$F(MY.JobId).err"
    assert d["Log"] == "$(LogDirectory)/worker-$(ClusterId).log"
    # A cancelled job's workers are killed: only what was streamed is kept.
    assert d["Stream_Output"] == d["Stream_Error"] == "True"
    assert job(log_directory="/logs").job_header_dict["Stream_Output"] is True
    assert not {"LogDirectory", "Output", "Error", "Log", "Stream_Output"} & set(description(job()))


def test_batch_name_is_the_worker_name_and_the_job_name_the_description():
    d = description(job(name="cluster-3", job_name="jn"))
    assert d["batch_name"] == "cluster-3" and d["description"] == "jn"


def test_an_arrays_elements_each_get_their_worker_name_as_batch_name():
    jobs = [job(name=f"c-{i}", job_name="jn") for i in range(3)]
    d = description_of_array(jobs[0].array_of(jobs), 3)
    assert [d[f"JqrefWorkerName{i}"] for i in range(3)] == ["c-0", "c-1", "c-2"]
    # The element's ProcId picks its macro: $(JqrefWorkerName$(ProcId)) is $(JqrefWorkerName1) in element 1.
    assert d["batch_name"] == "$(JqrefWorkerName$(ProcId))" and d["description"] == "jn"
    assert "JqrefWorkerName0" not in description(jobs[0])


def description_of_array(j, count):
    lines = j.job_script().splitlines()
    assert lines[-1] == f"queue {count}"
    return dict(line.split(" = ", 1) for line in lines[:-1])


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_reach_the_job_unchanged(value):
    d = description(
        job(name=value, job_name="n", environment={"V": value}, job_script_prologue=[f"echo {shlex.quote(value)}"])
    )
    interpreter, *rest = condor_words(d["arguments"])
    assert [d["executable"], interpreter] == ["/usr/bin/env", "bash"]
    flag, body = rest
    assert flag == "-c"
    commands = body.split("; ")
    assert shlex.split(commands[0]) == ["echo", value]
    worker = shlex.split(commands[-1])
    if not re.search(r"\$[A-Za-z_{]", value):  # else a reference the job expands, as in dask-jobqueue
        assert worker[worker.index("--name") + 1] == value
    assert condor_words(d["environment"]) == [f"V={value}"]
    assert submitted_batch_name(d["batch_name"]) == value


def submitted_batch_name(text: str) -> str:
    """batch_name as condor_submit reads it: macros expanded, trimmed, one pair of quotes taken off."""
    text = text.replace("$(DOLLAR)", "$").replace("$(JqrefNothing)", "").strip()
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] == '"' else text


def test_names_keep_dollar_signs_and_backslashes_literal():
    d = description(job(name="a $(b) $$c $", job_name="x $$ $F(y)"))
    # A lone $ is $(DOLLAR); HTCondor leaves a run of them alone (and would not expand $(DOLLAR) after a $).
    assert d["batch_name"] == "a $(DOLLAR)(b) $$c $(DOLLAR)"
    assert d["description"] == "x $$ $(DOLLAR)F(y)"
    # $$( is HTCondor's match-time substitution, which no value can spell.
    with pytest.raises(ValueError, match=r"two or more \$ before a parenthesis"):
        job(job_name="a $$(b)")
    # A trailing backslash would join the next line: an undefined macro (nothing) ends the value.
    assert description(job(job_name="tail\\"))["description"] == "tail\\$(JqrefNothing)"


def test_batch_names_condor_submit_would_unquote_or_trim_are_quoted():
    assert description(job(name='"q"'))["batch_name"] == '""q""'
    assert description(job(name=" s "))["batch_name"] == '" s "'
    assert description(job(name='a"b'))["batch_name"] == 'a"b'
    for name in ['"q"', " s ", 'a"b', '"', "tail\\"]:
        assert submitted_batch_name(description(job(name=name))["batch_name"]) == name


def test_extra_directives_are_a_dict_and_never_skipped():
    d = description(
        job(
            job_extra_directives={"+ProjectName": '"p"', "requirements": "True", "+Extra": True},
            job_directives_skip=["requirements", "Project"],
        )
    )
    assert d["+ProjectName"] == '"p"' and d["requirements"] == "True" and d["+Extra"] == "True"
    with pytest.raises(TypeError, match="dict"):
        job(job_extra_directives=["requirements = True"])


def test_skip_by_name_drops_that_command_and_other_text_the_lines_containing_it():
    by_name = description(job(log_directory="/logs", job_directives_skip=["Log", "stream_output"]))
    assert "Log" not in by_name and "Stream_Output" not in by_name
    assert {"Output", "Error", "LogDirectory", "Stream_Error"} <= set(by_name)  # as dask-jobqueue pops keys
    by_text = description(job(disk="1GiB", job_directives_skip=["floor("]))
    assert "RequestMemory" not in by_text and "RequestDisk" not in by_text and "RequestCpus" in by_text
    # What the job runs is not a directive: nothing skips it.
    assert {"universe", "executable", "arguments"} <= set(description(job(job_directives_skip=["-c", "bash"])))
    assert job(job_directives_skip=["RequestCpus"]).job_header.splitlines()[0] == "batch_name = w-0"


def test_refused_input():
    with pytest.raises(ValueError, match="no queues"):
        job(queue="short")
    with pytest.raises(ValueError, match="single line"):
        job(job_name="a\nqueue 100")


def test_submit_and_cancel_commands_are_strings_with_the_extra_arguments():
    plain = job()
    assert plain.submit_command == "condor_submit -terse" and plain.cancel_command == "condor_rm"
    assert plain.submit_argv() == ["condor_submit", "-terse", "-"]  # the description comes on stdin
    extra = job(submit_command_extra=["-name", "sched d"], cancel_command_extra=["-forcex"])
    assert extra.submit_command == "condor_submit -terse -name 'sched d'"
    assert extra.submit_argv() == ["condor_submit", "-terse", "-name", "sched d", "-"]
    assert extra.cancel_command == "condor_rm -forcex"
    assert extra.cancel_argv(["1.0", "1.1"]) == ["condor_rm", "-forcex", "1.0", "1.1"]
    # The class keeps the argument lists every scheduler declares.
    assert HTCondorJob.submit_command == ("condor_submit", "-terse") and HTCondorJob.cancel_command == ("condor_rm",)
    # As in dask-jobqueue, the job runs its own string.
    extra.cancel_command = "condor_rm -name other"
    assert extra.cancel_argv(["2.0"]) == ["condor_rm", "-name", "other", "2.0"]


def test_job_id_and_walltime_parsing():
    assert HTCondorJob.parse_job_id("15.0 - 15.0\n") == "15.0"
    assert HTCondorJob.parse_job_id("15.0 - 15.11\n") == "15.0"
    assert HTCondorJob.parse_job_id('** Proc 15.0:\nArgs = "x 1.5 - 2.5"\n\n15.0 - 15.0\n') == "15.0"  # -verbose too
    # Without -terse, as dask-jobqueue reads it: the cluster's first job.
    assert HTCondorJob.parse_job_id("Submitting job(s).\n1 job(s) submitted to cluster 15.\n") == "15.0"
    assert job()._job_id_from_submit_output("1 job(s) submitted to cluster 16.\n") == "16.0"
    with pytest.raises(ValueError):
        HTCondorJob.parse_job_id("Submitting job(s).\n")
    assert [_seconds(w) for w in ("00:07:00", "7:00", "420", 420)] == [420] * 4


def test_states_from_condor_q():
    out = "".join(f"{n}\t0\t{n}\tundefined\tundefined\n" for n in range(1, 8))
    states = HTCondorJob.parse_states(CommandResult(("condor_q",), 0, out, ""), [])
    assert {k: v[0] for k, v in states.items()} == {
        "1.0": JobState.PENDING,
        "2.0": JobState.RUNNING,
        "3.0": JobState.ENDED,
        "4.0": JobState.ENDED,
        "5.0": JobState.HELD,
        "6.0": JobState.RUNNING,
        "7.0": JobState.RUNNING,
    }


def test_a_held_job_is_removed_and_tracked_until_it_leaves_the_queue():
    """A held job stays held until someone releases it: condor_rm it, replace
    it at once, and keep polling it until condor_q shows it removed."""
    held_row = (0, "5\t0\t5\tallowed_job_duration exceeded\tundefined\n", "")
    runner = ScriptedRunner(
        held_row,
        (0, "Job 5.0 marked for removal\n", ""),
        held_row,
        (0, "", ""),
        held_row,
        (0, "5\t0\t3\tundefined\tundefined\n", ""),
    )
    replaced = []
    batch = BatchQueue(HTCondorJob, runner, on_ended=lambda j, detail: replaced.append((j.job_id, detail)))
    held = job(batch=batch)
    batch.adopt(held, "5.0")

    async def polls():
        await batch.poll()
        assert ["condor_rm", "5.0"] in runner.calls, "the held job was not removed"
        assert batch.cancelled == {"5.0": held} and batch.active == {} and replaced == [("5.0", "held")]
        await batch.poll()  # still held while the schedd removes it
        await batch.poll()  # an empty answer, asked again at once: still held
        assert batch.cancelled == {"5.0": held}, "dropped before the queue showed it gone"
        await batch.poll()

    asyncio.run(polls())
    assert batch.cancelled == {} and len(replaced) == 1
    status = HTCondorJob.status_command(["5.0"])
    assert runner.calls == [status, ["condor_rm", "5.0"], status, status, status, status]


def test_failed_condor_q_is_an_error_and_rm_of_gone_jobs_is_not():
    with pytest.raises(CommandError):
        HTCondorJob.parse_states(CommandResult(("condor_q",), 1, "", "-- Failed to fetch ads from: <...> : login"), [])
    assert HTCondorJob.already_gone(CommandResult(("condor_rm",), 1, "", "\nJob 99.0 not found\n"))
