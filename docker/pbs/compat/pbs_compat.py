"""The part of the compat flavour's PBS client interface that Debian's
slurm-wlm-torque wrappers lack, written for this testbed (docker/pbs/README.md).

It is not a PBS server: every answer comes from Slurm. Three entry points,
each installed as a small launcher (see the Dockerfile):

``qsub``
    PBS sizes in ``-l`` resources (``mem``, ``vmem``, ``pmem``, ``pvmem``,
    also inside ``select=`` chunks), on the command line and in the script's
    ``#PBS`` lines, are converted to what Slurm reads: a bare number is bytes
    in PBS (megabytes to Slurm's ``sbatch``), ``kb``/``mb``/``gb``/``tb``/``pb``
    are powers of 1024 and ``w``/``kw``/... words of 8 bytes, in any case.
    Then Debian's ``qsub`` (moved aside to ``qsub.torque``) runs as before.

``qstat``
    ``-x`` (finished jobs too, in state ``F`` with PBS Pro's ``Exit_status``)
    and ``-F json`` (with ``-f``) are answered here, from ``scontrol --json``
    and the records of finished jobs Slurm's ``jobcomp/script`` leaves (the
    ``record`` entry point). Any other ``qstat`` call goes to Debian's
    ``qstat`` (``qstat.torque``) unchanged, so its default output stays.

``record``
    Run by ``slurmctld`` (``JobCompLoc``) as each job ends: keeps the job's
    completion record, which Slurm passes in the environment, as
    ``<HISTORY_DIR>/<job id>.json``, so ``qstat -x`` still knows the job after
    Slurm forgets it (``MinJobAge``).

Standard library only: it runs under the nodes' system Python.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

HISTORY_DIR = Path(os.environ.get("JQREF_PBS_HISTORY", "/var/spool/jqref-pbs/finished"))
HISTORY_DAYS = 14  # PBS Pro's default job_history_duration
SLURM_CONF = Path("/etc/slurm/slurm.conf")
TORQUE_QSUB = "/usr/bin/qsub.torque"
TORQUE_QSTAT = "/usr/bin/qstat.torque"
VERSION = "jqref-compat"  # pbs_version: what answers, not a PBS release

# PBS batch error codes as their commands exit with them (the code modulo 256).
EXIT_UNKNOWN_JOB = 153  # PBSE_UNKJOBID
EXIT_HISTORY_JOB = 35  # PBSE_HISTJOBID: finished, ask with -x
EXIT_USAGE = 2

# ---------------------------------------------------------------- sizes

_UNIT_BYTES = {"": 1, "b": 1, "w": 8}
for _power, _prefix in enumerate("kmgtp", start=1):
    _UNIT_BYTES[_prefix] = _UNIT_BYTES[_prefix + "b"] = 1024**_power
    _UNIT_BYTES[_prefix + "w"] = 8 * 1024**_power
_SIZE = re.compile(r"(\d+)([kmgtp]?[bw]?)", re.IGNORECASE)
MEMORY_RESOURCES = ("mem", "vmem", "pmem", "pvmem")


def parse_size(text: str) -> int:
    """Bytes in a PBS size: an integer, then an optional unit (b, kb ... pb;
    w, kw ... pw, words of 8 bytes; the b may be left out), in any case; a
    bare number is bytes."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a PBS size: {text!r}")
    return int(match[1]) * _UNIT_BYTES[match[2].lower()]


def slurm_size(nbytes: int) -> str:
    """A size as Slurm's sbatch reads it: whole megabytes (its unit), rounded
    up, never zero (Slurm's 0 means all of a node's memory)."""
    return f"{max(1, math.ceil(nbytes / 1024**2))}mb"


def pbs_size(nbytes: int) -> str:
    """A size as PBS prints it: the largest unit that keeps it whole."""
    for unit in ("tb", "gb", "mb", "kb"):
        if nbytes and nbytes % _UNIT_BYTES[unit] == 0:
            return f"{nbytes // _UNIT_BYTES[unit]}{unit}"
    return f"{nbytes}b"


def _convert_resource(item: str) -> str:
    """One ``name=value`` of a resource list or chunk, its size converted if
    it is a memory resource with a PBS size (anything else is left alone)."""
    name, sep, value = item.partition("=")
    if sep and name.strip().lower() in MEMORY_RESOURCES:
        try:
            return f"{name}={slurm_size(parse_size(value))}"
        except ValueError:
            pass
    return item


def convert_resource_list(text: str) -> str:
    """A ``-l`` argument with its memory sizes converted for Slurm:
    ``mem=104857600`` is ``mem=100mb``, and so is a ``select=`` chunk's."""
    items = []
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip().lower() == "select":
            # Chunks joined by +, each N:res=value:res=value (mem is per chunk).
            chunks = [":".join(_convert_resource(part) for part in chunk.split(":")) for chunk in value.split("+")]
            items.append(f"{name}={'+'.join(chunks)}")
        else:
            items.append(_convert_resource(item))
    return ",".join(items)


_DIRECTIVE_L = re.compile(r"(-l\s*)([\"']?)([^\s\"']+)\2")


def convert_script(text: str) -> str:
    """A job script with the ``-l`` sizes of its ``#PBS`` lines converted.
    Only the directive block is read by the batch system (up to the first
    line that is neither blank nor a comment), so only it is changed."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        stripped = line.strip()
        if index and stripped and not stripped.startswith("#"):
            break
        if stripped.startswith("#PBS"):
            lines[index] = _DIRECTIVE_L.sub(lambda m: m[1] + m[2] + convert_resource_list(m[3]) + m[2], line)
    return "".join(lines)


# qsub options that take a value (Debian's qsub reads them with Getopt::Long,
# in order, up to the script: what follows the script is its arguments).
_QSUB_VALUED = {"-a", "-A", "-b", "-e", "-J", "-l", "-m", "-M", "-N", "-o", "-p", "-P", "-q", "-r", "-S", "-t", "-v"}
_QSUB_VALUED |= {"-W", "-wd", "--wd"}


def convert_qsub_args(args: Sequence[str]) -> tuple[list[str], int | None]:
    """qsub's arguments with each ``-l`` list converted, and the index of the
    script operand (None if there is none)."""
    out: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            out.append(arg)
            rest = list(args[index + 1 :])
            return out + rest, len(out) if rest else None
        if not arg.startswith("-") or arg == "-":
            script_at = len(out)
            return out + list(args[index:]), script_at
        if arg == "-l" and index + 1 < len(args):
            out += [arg, convert_resource_list(args[index + 1])]
            index += 2
            continue
        if arg.startswith("-l") and len(arg) > 2 and not arg.startswith("-l="):
            out += ["-l", convert_resource_list(arg[2:])]  # -lmem=1gb: one word, as PBS's qsub takes it
        elif arg in _QSUB_VALUED and index + 1 < len(args):
            out += [arg, args[index + 1]]
            index += 1
        elif arg == "-pe" and index + 2 < len(args):
            out += args[index : index + 3]
            index += 2
        elif arg == "-j" and index + 1 < len(args) and not args[index + 1].startswith("-"):
            out += [arg, args[index + 1]]  # -j takes an optional value
            index += 1
        else:
            out.append(arg)
        index += 1
    return out, None


def qsub_main(args: Sequence[str]) -> int:
    args, script_at = convert_qsub_args(args)
    tmp = None
    try:
        if script_at is not None and os.path.isfile(args[script_at]):
            script = Path(args[script_at])
            text = script.read_bytes().decode("utf-8", "surrogateescape")
            converted = convert_script(text)
            if converted != text:
                # Same base name: Debian's qsub names the job and its output files after it.
                tmp = tempfile.mkdtemp(prefix="jqref-qsub.")
                copy = Path(tmp) / script.name
                copy.write_bytes(converted.encode("utf-8", "surrogateescape"))
                args[script_at] = str(copy)
        return subprocess.run([TORQUE_QSUB, *args]).returncode
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- job records

# Slurm's base states: those that end a job, and PBS's letter for the others.
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
FINISHED |= {"OUT_OF_MEMORY"}
_LIVE_STATE = {"PENDING": "Q", "RUNNING": "R", "SUSPENDED": "S", "REQUEUED": "Q", "RESIZING": "R"}
SIGKILL, SIGTERM = 9, 15


def _number(value: object) -> int | None:
    """A Slurm JSON number ({"set": true, "number": 3}) or a plain one."""
    if isinstance(value, Mapping):
        return int(value["number"]) if value.get("set") and not value.get("infinite") else None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def exit_status(state: str, started: bool, return_code: int | None, signal: int | None) -> int | None:
    """PBS Pro's Exit_status for a job Slurm ended in ``state``: the script's
    exit code; 256 + the signal that killed it; 265 (SIGKILL) for a job
    deleted while running, as PBS Pro reports it; 271 (SIGTERM) for one over
    its walltime; -1 for a job that could not be started or whose node
    failed (PBS's 'could not execute'); none for a job deleted before it ran."""
    if state == "CANCELLED":
        return 256 + SIGKILL if started else None
    if state in {"TIMEOUT", "DEADLINE"}:
        return 256 + SIGTERM
    if state in {"BOOT_FAIL", "NODE_FAIL"}:
        return -1
    if signal:
        return 256 + signal
    if return_code is None or (state == "FAILED" and return_code == 0):
        return -1 if state != "COMPLETED" else 0
    return return_code


def record_from_slurm_json(job: Mapping) -> dict:
    """One job of ``scontrol --json show job``, as the record the PBS view is built from."""
    states = list(job.get("job_state") or [])
    base = states[0] if states else "PENDING"
    exit_code = job.get("exit_code") or {}
    signal = _number((exit_code.get("signal") or {}).get("id")) if isinstance(exit_code, Mapping) else None
    resources = job.get("job_resources") or {}
    allocation = ((resources.get("nodes") or {}).get("allocation")) or []
    per_node = [(a.get("name", ""), (a.get("cpus") or {}).get("count", 0)) for a in allocation]
    memory_per_node, memory_per_cpu = _number(job.get("memory_per_node")), _number(job.get("memory_per_cpu"))
    cpus, nodes = _number(job.get("cpus")) or 0, _number(job.get("node_count")) or 1
    if memory_per_node:
        memory_mb = memory_per_node * nodes
    elif memory_per_cpu:
        memory_mb = memory_per_cpu * max(cpus, 1)
    else:
        memory_mb = None
    start = _number(job.get("start_time")) or 0
    return {
        "id": str(job.get("job_id")),
        "name": job.get("name", ""),
        "user": job.get("user_name") or str(job.get("user_id", "")),
        "state": base,
        "completing": "COMPLETING" in states[1:],
        "held": bool(job.get("hold")) or (base == "PENDING" and "Held" in str(job.get("state_reason", ""))),
        "reason": job.get("state_reason", ""),
        "partition": job.get("partition", ""),
        "account": job.get("account", ""),
        "submit_host": job.get("allocating_node", ""),
        "submit": _number(job.get("submit_time")),
        "eligible": _number(job.get("eligible_time")),
        "start": start or None,
        "end": _number(job.get("end_time")) or None,
        "started": bool(job.get("batch_host")) and start > 0,
        "return_code": _number((exit_code or {}).get("return_code")) if isinstance(exit_code, Mapping) else None,
        "signal": signal,
        "cpus": cpus,
        "nodes": nodes,
        "per_node": per_node,
        "memory_mb": memory_mb,
        "time_limit": _number(job.get("time_limit")),
        "stdout": job.get("standard_output", ""),
        "stderr": job.get("standard_error", ""),
        "workdir": job.get("current_working_directory", ""),
        "requeue": bool(job.get("requeue")),
        "restarts": job.get("restart_cnt", 0),
    }


def _slurm_time(value: str | None) -> int | None:
    """A jobcomp time: seconds since the epoch, or an ISO time in the controller's zone."""
    if not value or value in {"Unknown", "None", "0"}:
        return None
    if value.isdigit():
        return int(value)
    try:
        return int(time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


def _limit_minutes(value: str | None) -> int | None:
    """A jobcomp time limit (``[days-]hours:minutes:seconds``, ``UNLIMITED``) in minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", (value or "").strip())
    if not match:
        return _number(value)
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 * 60 + minutes * 60 + seconds) // 60


def _output_path(pattern: str, env: Mapping[str, str]) -> str:
    """An output file name as Slurm gives it to jobcomp, its %A/%j/%x/%u filled in."""
    fields = {"A": env.get("JOBID", ""), "j": env.get("JOBID", ""), "x": env.get("JOBNAME", "")}
    fields["u"] = env.get("USERNAME", "")
    return re.sub(r"%([%Ajxu])", lambda m: "%" if m[1] == "%" else fields[m[1]], pattern)


def record_from_jobcomp(env: Mapping[str, str]) -> dict:
    """The environment ``jobcomp/script`` runs its script with (a finished
    job), as the same record."""
    code, _, sig = env.get("EXITCODE", "").partition(":")
    start = _slurm_time(env.get("START"))
    nodes_text = env.get("NODES", "")
    nodes = _number(env.get("NODECNT")) or 1
    cpus = _number(env.get("PROCS")) or 0
    node_names = _expand_hostlist(nodes_text) if nodes_text and nodes_text != "(null)" else []
    per_node = [(name, cpus // max(len(node_names), 1)) for name in node_names]
    return {
        "id": env.get("JOBID", ""),
        "name": env.get("JOBNAME", ""),
        "user": env.get("USERNAME") or env.get("UID", ""),
        "state": env.get("JOBSTATE", "COMPLETED").split()[0],
        "completing": False,
        "held": False,
        "reason": "",
        "partition": env.get("PARTITION", ""),
        "account": env.get("ACCOUNT", ""),
        "submit_host": "",
        "submit": _slurm_time(env.get("SUBMIT")),
        "eligible": _slurm_time(env.get("SUBMIT")),
        "start": start,
        "end": _slurm_time(env.get("END")),
        "started": bool(node_names) and start is not None,
        "return_code": _number(code),
        "signal": _number(sig),
        "cpus": cpus,
        "nodes": nodes,
        "per_node": per_node,
        "memory_mb": None,
        "time_limit": _limit_minutes(env.get("LIMIT")),
        "stdout": _output_path(env.get("STDOUT", ""), env),
        "stderr": _output_path(env.get("STDERR", ""), env),
        "workdir": env.get("WORK_DIR", ""),
        "requeue": False,
        "restarts": 0,
    }


def _expand_hostlist(text: str) -> list[str]:
    """Slurm's compact host list (``compute[1-2],login``) spelt out."""
    names: list[str] = []
    for prefix, ranges in re.findall(r"([^,\[]+)(?:\[([^\]]*)\])?,?", text):
        if not ranges:
            names.append(prefix)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            for n in range(int(low), int(high or low) + 1):
                names.append(f"{prefix}{str(n).zfill(len(low))}")
    return names


# ---------------------------------------------------------------- the PBS view


def _ctime(seconds: int | None) -> str | None:
    return time.ctime(seconds) if seconds else None


def _duration(seconds: int) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def pbs_state(record: Mapping) -> str:
    """PBS's one-letter state: F for a finished job, E while Slurm is still ending it."""
    if record["state"] in FINISHED:
        return "E" if record["completing"] else "F"
    if record["completing"]:
        return "E"
    if record["state"] == "PENDING" and record["held"]:
        return "H"
    return _LIVE_STATE.get(record["state"], "Q")


def pbs_attributes(record: Mapping, server: str, now: float | None = None) -> dict:
    """A job's attributes under PBS Pro's names, as ``qstat -f`` shows them;
    numbers where PBS Pro's JSON has numbers. Only what Slurm knows is shown."""
    now = time.time() if now is None else now
    state = pbs_state(record)
    attrs: dict = {"Job_Name": record["name"], "Job_Owner": f"{record['user']}@{record['submit_host'] or server}"}
    if record["started"] and record["start"]:
        end = record["end"] if state == "F" and record["end"] else now
        used: dict = {"ncpus": record["cpus"], "walltime": _duration(end - record["start"])}
        attrs["resources_used"] = used
    attrs["job_state"] = state
    attrs["queue"] = record["partition"]
    attrs["server"] = server
    if record["account"]:
        attrs["Account_Name"] = record["account"]
    attrs["Checkpoint"] = "u"
    for name, key in (("ctime", "submit"), ("qtime", "submit"), ("etime", "eligible")):
        if record[key]:
            attrs[name] = _ctime(record[key])
    if record["stderr"]:
        attrs["Error_Path"] = f"{server}:{record['stderr']}"
    if record["started"] and record["per_node"]:
        attrs["exec_host"] = "+".join(f"{host}/0*{cpus}" for host, cpus in record["per_node"])
        memory = f":mem={record['memory_mb'] // len(record['per_node']) * 1024}kb" if record["memory_mb"] else ""
        attrs["exec_vnode"] = "+".join(f"({host}:ncpus={cpus}{memory})" for host, cpus in record["per_node"])
    attrs["Hold_Types"] = "u" if state == "H" else "n"
    attrs["Join_Path"] = "n"
    attrs["Keep_Files"] = "n"
    attrs["Mail_Points"] = "a"
    if record["end"] and state == "F":
        attrs["mtime"] = _ctime(record["end"])
    elif record["start"]:
        attrs["mtime"] = _ctime(record["start"])
    if record["stdout"]:
        attrs["Output_Path"] = f"{server}:{record['stdout']}"
    attrs["Priority"] = 0
    attrs["Rerunable"] = "True" if record["requeue"] else "False"
    resource_list: dict = {"ncpus": record["cpus"] or 1, "nodect": record["nodes"]}
    chunk = f"{record['nodes']}:ncpus={max(1, (record['cpus'] or 1) // max(record['nodes'], 1))}"
    if record["memory_mb"]:
        resource_list["mem"] = pbs_size(record["memory_mb"] * 1024**2)
        chunk += f":mem={pbs_size(record['memory_mb'] * 1024**2 // max(record['nodes'], 1))}"
    resource_list["select"] = chunk
    if record["time_limit"] is not None:
        resource_list["walltime"] = _duration(record["time_limit"] * 60)
    attrs["Resource_List"] = resource_list
    if record["start"] and record["started"]:
        attrs["stime"] = _ctime(record["start"])
    if state == "F" and record["end"]:
        attrs["obittime"] = _ctime(record["end"])
    attrs["Submit_Host"] = record["submit_host"] or server
    if state in {"F", "E"}:
        status = exit_status(record["state"], record["started"], record["return_code"], record["signal"])
        if status is not None:
            attrs["Exit_status"] = status
    attrs["run_count"] = (record["restarts"] or 0) + (1 if record["started"] else 0)
    if state == "Q" and record["reason"] not in {"", "None"}:
        attrs["comment"] = f"Not Running: {record['reason']}"
    elif state == "F":
        attrs["comment"] = _finished_comment(record)
    return attrs


def _finished_comment(record: Mapping) -> str:
    if not record["started"]:
        return "Job deleted before it ran" if record["state"] == "CANCELLED" else "Job could not be started"
    where = "+".join(f"({host}:ncpus={cpus})" for host, cpus in record["per_node"])
    ran = f"Job run at {time.strftime('%a %b %d at %H:%M', time.localtime(record['start']))} on {where}"
    if record["state"] == "COMPLETED" or (record["state"] == "FAILED" and record["return_code"]):
        return f"{ran} and finished"
    return f"{ran} and ended: {record['state']} in Slurm"


def render_json(jobs: Mapping[str, dict], server: str, version: str, now: float) -> str:
    """``qstat -f -F json``: PBS Pro's layout, four-space indent."""
    report = {"timestamp": int(now), "pbs_version": version, "pbs_server": server, "Jobs": dict(jobs)}
    return json.dumps(report, indent=4) + "\n"


def render_full(jobs: Mapping[str, dict]) -> str:
    """``qstat -f`` text: ``Job Id:`` then ``    name = value``; resources as ``Resource_List.ncpus``."""
    out = []
    for job_id, attrs in jobs.items():
        out.append(f"Job Id: {job_id}")
        for name, value in attrs.items():
            if isinstance(value, Mapping):
                out += [f"    {name}.{key} = {item}" for key, item in value.items()]
            else:
                out.append(f"    {name} = {value}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def render_table(jobs: Mapping[str, dict]) -> str:
    """``qstat -x`` without ``-f``: PBS's default one-line-per-job table.
    Time Use is CPU time, which Slurm does not keep without accounting: ``--``."""
    if not jobs:
        return ""
    lines = [
        f"{'Job id':<17} {'Name':<16} {'User':<16}  {'Time Use':>8} S Queue",
        f"{'-' * 16:<17} {'-' * 16:<16} {'-' * 16:<16}  {'-' * 8} - -----",
    ]
    for job_id, attrs in jobs.items():
        user, name = attrs["Job_Owner"].split("@")[0], attrs["Job_Name"]
        lines.append(
            f"{job_id[:16]:<17} {name[:16]:<16} {user[:16]:<16}  {'--':>8} {attrs['job_state']} {attrs['queue']}"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- qstat


class UsageError(Exception):
    pass


def parse_qstat_args(args: Sequence[str]) -> dict:
    """The qstat options this layer answers: -f, -F json, -x, -H, -w, -u users; job ids."""
    options: dict = {"full": False, "format": None, "history": False, "only_finished": False, "users": None}
    ids: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-") and len(arg) > 1 and arg != "--":
            letters = arg[1:]
            while letters:
                letter, letters = letters[0], letters[1:]
                if letter == "f":
                    options["full"] = True
                elif letter == "x":
                    options["history"] = True
                elif letter == "H":
                    options["history"] = options["only_finished"] = True
                elif letter == "w":
                    pass  # wide output: lines are not cut here anyway
                elif letter in "Fu":
                    value = letters or (args[index + 1] if index + 1 < len(args) else None)
                    if value is None:
                        raise UsageError(f"option -{letter} needs a value")
                    if not letters:
                        index += 1
                    letters = ""
                    if letter == "F":
                        options["format"] = value.lower()
                    else:
                        options["users"] = {u.split("@")[0] for u in value.split(",") if u}
                else:
                    raise UsageError(
                        f"-{letter} together with -x, -H or -F is not implemented by the compat layer"
                        " (docker/pbs/README.md lists what is)"
                    )
        elif arg != "--":
            ids.append(arg)
        index += 1
    if options["format"] is not None and options["format"] != "json":
        raise UsageError(f"-F {options['format']}: only -F json is implemented by the compat layer")
    if options["format"] and not options["full"]:
        raise UsageError("-F json goes with -f")
    options["ids"] = ids
    return options


def wants_this_layer(args: Sequence[str]) -> bool:
    """Whether a qstat call is answered here (-x, -H or -F) rather than by Debian's qstat."""
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("-") and not arg.startswith("--"):
            letters = arg[1:].split("u")[0]  # -uNAME: what follows u is a user name
            if any(letter in letters for letter in "xHF"):
                return True
    return False


def bare_id(job_id: str) -> str:
    """A job id without PBS's server suffix (``42.login`` is ``42``)."""
    return job_id.split("@")[0].split(".")[0]


def select_jobs(records: Mapping[str, dict], options: Mapping) -> tuple[dict[str, dict], list[tuple[str, str, int]]]:
    """The records a qstat call shows, in id order, and its errors (id, message, exit code)."""
    chosen: dict[str, dict] = {}
    errors: list[tuple[str, str, int]] = []
    if options["ids"]:
        for job_id in options["ids"]:
            record = records.get(bare_id(job_id))
            if record is None:
                errors.append((job_id, f"qstat: Unknown Job Id {job_id}", EXIT_UNKNOWN_JOB))
            elif pbs_state(record) == "F" and not options["history"]:
                message = f"qstat: {job_id} Job has finished, use -x or -H to obtain historical job information"
                errors.append((job_id, message, EXIT_HISTORY_JOB))
            elif options["only_finished"] and pbs_state(record) != "F":
                continue
            else:
                chosen[record["id"]] = record
        return chosen, errors
    for job_id in sorted(records, key=_id_key):
        record = records[job_id]
        finished = pbs_state(record) == "F"
        if (finished and not options["history"]) or (options["only_finished"] and not finished):
            continue
        if options["users"] is not None and record["user"] not in options["users"]:
            continue
        chosen[job_id] = record
    return chosen, errors


def _id_key(job_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[_.\[\]]", job_id) if p) or (0,)


def load_history(directory: Path = HISTORY_DIR) -> dict[str, dict]:
    """The finished jobs' records the recorder kept (unreadable ones are skipped)."""
    records = {}
    try:
        paths = list(directory.glob("*.json"))
    except OSError:
        return {}
    for path in paths:
        try:
            record = record_from_jobcomp(json.loads(path.read_text()))
        except (OSError, ValueError, AttributeError):
            continue
        if record["id"]:
            records[record["id"]] = record
    return records


def load_live() -> tuple[dict[str, dict], str]:
    """The jobs slurmctld still holds (finished ones for MinJobAge), and Slurm's version."""
    done = subprocess.run(["scontrol", "--json", "show", "job"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or f"scontrol exited {done.returncode}")
    report = json.loads(done.stdout)
    # scontrol exits 0 with no jobs when it cannot reach slurmctld; only an
    # answer from it has the controller's time. No answer is not "no jobs".
    if report.get("errors") or not _number(report.get("last_update")):
        errors = "; ".join(str(e.get("description", e)) for e in report.get("errors") or [])
        last = done.stderr.strip().splitlines()[-1:]
        raise RuntimeError(errors or (last[0] if last else "no answer from slurmctld"))
    version = ((report.get("meta") or {}).get("slurm") or {}).get("release", "")
    return {str(job["job_id"]): record_from_slurm_json(job) for job in report.get("jobs", [])}, version


def server_name(conf: Path = SLURM_CONF) -> str:
    """The server's name: the host slurmctld runs on (login)."""
    try:
        for line in conf.read_text().splitlines():
            match = re.match(r"\s*SlurmctldHost\s*=\s*([^\s(#]+)", line)
            if match:
                return match[1]
    except OSError:
        pass
    return os.uname().nodename


def qstat_main(args: Sequence[str]) -> int:
    if not wants_this_layer(args):
        os.execv(TORQUE_QSTAT, [TORQUE_QSTAT, *args])
    try:
        options = parse_qstat_args(args)
    except UsageError as error:
        print(f"qstat: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        live, slurm_version = load_live()
    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as error:
        print(f"qstat: cannot reach the batch server (Slurm: {error})", file=sys.stderr)
        return 1
    # Finished jobs Slurm forgot: shown with -x, and named without it to say so.
    records = {**load_history(), **live} if options["history"] or options["ids"] else live
    chosen, errors = select_jobs(records, options)
    server, now = server_name(), time.time()
    jobs = {job_id: pbs_attributes(record, server, now) for job_id, record in chosen.items()}
    if options["format"] == "json":
        version = f"{VERSION} (Slurm {slurm_version})" if slurm_version else VERSION
        sys.stdout.write(render_json(jobs, server, version, now))
    elif options["full"]:
        sys.stdout.write(render_full(jobs))
    else:
        sys.stdout.write(render_table(jobs))
    for _, message, _ in errors:
        print(message, file=sys.stderr)
    return errors[-1][2] if errors else 0


# ---------------------------------------------------------------- the recorder


def record_main(environ: Mapping[str, str] = os.environ, directory: Path = HISTORY_DIR) -> int:
    """Keep a finished job's completion record (jobcomp/script's environment)
    and forget those older than PBS Pro's default history (two weeks)."""
    job_id = environ.get("JOBID", "")
    if not re.fullmatch(r"[0-9_]+", job_id):
        return 0
    keep = {key: value for key, value in environ.items() if key.isupper() and key not in {"PATH", "PWD", "SHLVL"}}
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".record.")
    with os.fdopen(fd, "w") as handle:
        json.dump(keep, handle)
    os.chmod(tmp, 0o644)
    os.replace(tmp, directory / f"{job_id}.json")
    cutoff = time.time() - HISTORY_DAYS * 86400
    for path in _old_records(directory.glob("*.json"), cutoff):
        path.unlink(missing_ok=True)
    return 0


def _old_records(paths: Iterable[Path], cutoff: float) -> Iterable[Path]:
    for path in paths:
        try:
            if path.stat().st_mtime < cutoff:
                yield path
        except OSError:
            continue


def main(argv: Sequence[str]) -> int:
    if len(argv) < 2 or argv[1] not in {"qsub", "qstat", "record"}:
        print("usage: pbs_compat.py qsub|qstat|record [args]", file=sys.stderr)
        return EXIT_USAGE
    command, args = argv[1], list(argv[2:])
    if command == "qsub":
        return qsub_main(args)
    if command == "qstat":
        return qstat_main(args)
    return record_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
