"""Grid Engine: directives, job ids, qstat -xml states, name rules."""

import asyncio
import os
import shlex
import signal
import time

import pytest

from jqref import BatchQueue, CommandError, CommandResult, JobState
from jqref.sge import SGEJob

import stand_in_worker
from test_batch_queue import ScriptedRunner

QSTAT_XML = """<?xml version='1.0'?>
<job_info xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running"><JB_job_number>2</JB_job_number><JB_name>a</JB_name><state>r</state></job_list>
    <job_list state="running"><JB_job_number>3</JB_job_number><JB_name>a</JB_name><state>dr</state></job_list>
  </queue_info>
  <job_info>
    <job_list state="pending"><JB_job_number>4</JB_job_number><JB_name>a</JB_name><state>qw</state></job_list>
    <job_list state="pending"><JB_job_number>5</JB_job_number><JB_name>a</JB_name><state>Eqw</state></job_list>
    <job_list state="pending"><JB_job_number>6</JB_job_number><JB_name>a</JB_name><state>hqw</state></job_list>
  </job_info>
</job_info>
"""


def job(**kwargs):
    kwargs.setdefault("cores", 4)
    kwargs.setdefault("memory", "8GiB")
    return SGEJob("tcp://10.0.0.1:8786", "w-0", **kwargs)


def directives(j):
    return [shlex.split(line[3:]) for line in j.job_script().splitlines() if line.startswith("#$ ")]


def test_directives_request_what_dask_jobqueue_requests_by_default():
    j = job(queue="all.q", account="proj", walltime="01:00:00", log_directory="/logs", job_name="jn")
    assert directives(j) == [
        ["-N", "jn"],
        ["-q", "all.q"],
        ["-P", "proj"],
        ["-l", "h_rt=01:00:00"],
        ["-e", "/logs/"],
        ["-o", "/logs/"],
        ["-cwd"],
        ["-j", "y"],
        ["-ac", f"jqref_tag={j.tag}"],
        ["-notify"],
    ]
    assert not any(a[0] == "-pe" or "mem" in " ".join(a) for a in directives(j))


def test_with_a_parallel_environment_slots_and_memory_per_slot():
    args = directives(job(pe="smp", memory_resource="mem_free"))
    assert ["-pe", "smp", "4"] in args and ["-l", "mem_free=2048M"] in args


def test_a_memory_resource_without_a_parallel_environment_is_for_the_one_slot():
    args = directives(job(memory_resource="mem_free"))
    assert ["-l", "mem_free=8192M"] in args and not any(a[0] == "-pe" for a in args)


def test_pe_and_memory_resource_are_configurable():
    args = directives(job(pe="mpi", memory_resource="h_vmem", resource_spec="gpu=1"))
    assert ["-pe", "mpi", "4"] in args and ["-l", "h_vmem=2048M"] in args and ["-l", "gpu=1"] in args
    assert not any(a[0] == "-l" and "mem" in a[1] for a in directives(job(pe="smp", memory_resource="")))


@pytest.mark.parametrize("name", ["two words", "a/b", "a:b", "a@b", "a*", "a?"])
def test_names_grid_engine_refuses_are_refused_here_with_a_reason(name):
    with pytest.raises(ValueError, match="Grid Engine job names"):
        job(job_name=name)


def test_values_with_quotes_are_refused():
    with pytest.raises(ValueError, match="quote"):
        job(log_directory="/it's")


def test_job_id_from_terse_output():
    assert SGEJob.parse_job_id("123\n") == "123"
    assert SGEJob.parse_job_id("124.1-3:1\n") == "124"
    with pytest.raises(ValueError):
        SGEJob.parse_job_id('Your job 1 ("x") has been submitted\n')


def test_states_from_qstat_xml():
    states = SGEJob.parse_states(CommandResult(("qstat",), 0, QSTAT_XML, ""), ["2", "3", "4", "5", "6", "7"])
    assert {k: v[0] for k, v in states.items()} == {
        "2": JobState.RUNNING,
        "3": JobState.RUNNING,
        "4": JobState.PENDING,
        "5": JobState.HELD,
        "6": JobState.PENDING,
    }


def test_a_job_in_error_state_is_deleted_and_tracked_until_it_leaves_the_queue():
    """Eqw never starts and would sit in the queue for ever: qdel it, replace
    it at once, and keep polling it until the queue no longer shows it."""
    without_job_5 = "\n".join(line for line in QSTAT_XML.splitlines() if "<JB_job_number>5<" not in line)
    runner = ScriptedRunner(
        (0, QSTAT_XML, ""),
        (0, QSTAT_XML, ""),  # the poll; the check before qdel
        (0, "dask has registered the job 5 for deletion\n", ""),
        (0, QSTAT_XML, ""),
        (0, without_job_5, ""),
        (0, QSTAT_XML, ""),  # missing, then listed
        (0, without_job_5, ""),
        (0, without_job_5, ""),
    )
    replaced = []
    batch = BatchQueue(SGEJob, runner, on_ended=lambda j, detail: replaced.append((j.job_id, detail)))
    held = job(batch=batch)
    batch.adopt(held, "5")

    async def polls():
        await batch.poll()
        assert ["qdel", "5"] in runner.calls, "the job in error state was not deleted"
        assert batch.cancelled == {"5": held} and batch.active == {} and replaced == [("5", "Eqw")]
        await batch.poll()  # still listed while Grid Engine deletes it
        await batch.poll()  # missing once, asked again at once: still listed
        assert batch.cancelled == {"5": held}, "dropped before the queue showed it gone"
        await batch.poll()

    asyncio.run(polls())
    assert batch.cancelled == {} and replaced == [("5", "Eqw")]
    assert [call[0] for call in runner.calls] == ["qstat", "qstat", "qdel", *["qstat"] * 5]


def test_failed_qstat_is_an_error():
    with pytest.raises(CommandError, match="unable to contact qmaster"):
        SGEJob.parse_states(CommandResult(("qstat",), 1, "", "error: unable to contact qmaster"), ["1"])
    with pytest.raises(CommandError, match="unreadable XML"):
        SGEJob.parse_states(CommandResult(("qstat",), 0, "<job_info", ""), ["1"])


def test_qdel_of_a_job_that_is_gone_counts_as_cancelled():
    assert SGEJob.already_gone(CommandResult(("qdel",), 1, "", 'denied: job "9" does not exist'))
    assert not SGEJob.already_gone(CommandResult(("qdel",), 1, "", "denied: permission"))


def test_found_by_tag_in_the_job_context():
    xml = """<detailed_job_info><djob_info>
      <element><JB_job_number>7</JB_job_number><JB_context><context_list>
        <VA_variable>jqref_tag</VA_variable><VA_value>jqref-other</VA_value></context_list></JB_context></element>
      <element><JB_job_number>8</JB_job_number><JB_context><context_list>
        <VA_variable>jqref_tag</VA_variable><VA_value>jqref-mine</VA_value></context_list></JB_context></element>
    </djob_info></detailed_job_info>"""
    assert SGEJob.parse_found(CommandResult(("qstat",), 0, xml, ""), "jqref-mine") == "8"
    assert SGEJob.parse_found(CommandResult(("qstat",), 0, "<unknown_jobs/>", ""), "jqref-mine") is None


def test_qdels_warning_reaches_the_workers_once_as_sigterm_though_grid_engine_sends_it_twice(tmp_path):
    # Grid Engine warns a -notify job with SIGUSR2 to its process group and
    # then again to each of its processes; a second SIGTERM would make a
    # closing nanny die at once (distributed restores SIGTERM's default).
    log = tmp_path / "signals"
    j = job(python=stand_in_worker.install(tmp_path))
    assert ["-notify"] in directives(j)
    script = tmp_path / "job.sh"
    script.write_text(j.job_script())
    shell = stand_in_worker.run_until_started(script, log)
    deadline = time.monotonic() + 20
    os.killpg(shell.pid, signal.SIGUSR2)  # the shepherd's kill(-pgid)
    while "TERM" not in log.read_text():
        assert time.monotonic() < deadline, "the warning never reached the worker"
        time.sleep(0.01)
    os.kill(shell.pid, signal.SIGUSR2)  # its pass over the job's processes, once the trap has run
    assert shell.wait(timeout=20) == 7  # the worker's own exit status, after it closed
    assert log.read_text().splitlines() == ["started True", "TERM"]


def test_the_notice_can_be_skipped_like_any_directive():
    assert ["-notify"] not in directives(job(job_directives_skip=["-notify"]))
