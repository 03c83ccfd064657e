"""What every option accepts, declared once, and the one check that applies it.

`config.Options` checks each value as it resolves it, from a keyword
argument or the dask config, so a job or cluster refuses a wrong value when
it is made, with an error that names the option, the value and what it
accepts. Without this, values were read some other way (``cores=2.5`` as 2,
``memory=4`` as 4 bytes, ``nanny="no"`` as true, ``walltime="-1"`` as no
limit) or failed later with a message naming nothing.

A kind is a small callable: it returns the value the option takes, or raises
`Refused`. `OPTIONS` gives the kind of each key of jqref.yaml's common
section, `SCHEDULER_OPTIONS` the keys a scheduler section adds or reads
differently, `CLUSTER_KEYWORDS` the cluster's own keywords that no section
holds. `''` is the same as null for a text option (a kind whose `text` is
true) whose default is null, as dask-jobqueue reads it (``queue: ''`` is no
queue); `config.Options` applies that before the kind.
"""

from __future__ import annotations

import collections.abc
import datetime
import functools
import math
import numbers
import os
import re
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from dask.utils import parse_bytes, parse_timedelta
from distributed.comm.registry import backends


class InvalidOptionError(ValueError, TypeError):
    """A value an option does not accept. A ValueError, as dask-jobqueue
    raises for bad options, and a TypeError, as Python raises for a value of
    the wrong type, so that either ``except`` catches it."""


class IgnoredValuesWarning(UserWarning):
    """Part of a value that jqref reads as dask-jobqueue does, which is without it."""


class Refused(Exception):
    """Raised by a kind for a value it does not accept; the argument, if
    any, says why when what the kind accepts does not make it plain."""


#: Line breaks and other control characters (a tab aside): in a directive or
#: a command line, a line break would end it and start another.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _a(value: Any) -> str:
    """'a float', 'an int': what the value is, for a reason."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _is_int(value: Any) -> bool:
    """An int, numpy's too, but not a bool (True is not 1 core)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _plain_number(value: numbers.Real) -> int | float:
    """A number as the int or float dask's parsers take: they read any other
    number (numpy's ints, a Fraction) as text, which fails or misreads it."""
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def check(name: str, value: Any, kind, where: str = "") -> Any:
    """`value` as option `name` takes it, or an `InvalidOptionError` saying
    what `name` accepts and what it got (`where`: the config key it came from)."""
    try:
        return kind(value)
    except Refused as refused:
        why = f" ({refused})" if str(refused) else ""
        raise InvalidOptionError(f"{name} must be {kind.accepts}, got {_shown(value)}{why}{where}") from None


# ---- kinds ---------------------------------------------------------------


@dataclass(frozen=True)
class WholeNumber:
    """An int in a range: not a float (2.5 cores is no number of cores),
    not a string of digits, not a bool."""

    what: str
    minimum: int = 1
    maximum: int | None = None

    @property
    def accepts(self) -> str:
        if self.maximum is None:
            return f"{self.what}, at least {self.minimum} (an int)"
        return f"{self.what} from {self.minimum} to {self.maximum} (an int)"

    def __call__(self, value):
        if not _is_int(value):
            raise Refused(_a(value))
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise Refused()
        return int(value)


@dataclass(frozen=True)
class Port:
    """A TCP port, as an int or as the digits of a destination or ssh config."""

    accepts = "a port number from 1 to 65535"

    def __call__(self, value):
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        return WholeNumber("a port number", 1, 65535)(value)


#: Sizes: a number alone counts bytes, so `memory=4` is 4 bytes, which no job
#: means; below this the unit was forgotten. Above the ceiling, a slip too.
SIZE_RANGE = (2**20, 2**50)


@dataclass(frozen=True)
class ByteSize:
    """A size dask reads (`parse_bytes`), from 1 MiB to 1 PiB."""

    text: ClassVar[bool] = True
    accepts = "a size from 1 MiB to 1 PiB such as '4 GiB' or '500 MB' (a number alone counts bytes: give a unit)"

    def __call__(self, value):
        if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
            raise Refused(_a(value))
        if isinstance(value, numbers.Real):
            value = _plain_number(value)
        try:
            nbytes = parse_bytes(value)
        except (ValueError, TypeError, OverflowError):
            raise Refused("not a size") from None
        if not SIZE_RANGE[0] <= nbytes <= SIZE_RANGE[1]:
            raise Refused(f"{nbytes} bytes")
        return value


@dataclass(frozen=True)
class Duration:
    """A duration dask reads (`parse_timedelta`), of at least `minimum`
    seconds (None: more than 0, since 0 and less mean never or no limit)."""

    minimum: float | None = None

    @property
    def accepts(self) -> str:
        bound = "more than 0" if self.minimum is None else f"at least {self.minimum:g} s"
        return f"a duration such as '30s' or '5 minutes', or a number of seconds, {bound}"

    def __call__(self, value):
        if isinstance(value, bool) or not isinstance(value, (str, numbers.Real, datetime.timedelta)):
            raise Refused(_a(value))
        if isinstance(value, numbers.Real):
            value = _plain_number(value)
        try:
            seconds = parse_timedelta(value)
        except Exception:  # KeyError, IndexError, ValueError: whatever it cannot read
            raise Refused("not a duration") from None
        if not math.isfinite(seconds) or (seconds <= 0 if self.minimum is None else seconds < self.minimum):
            raise Refused(f"{seconds:g} s")
        return value


@dataclass(frozen=True)
class Walltime:
    """A time limit, passed to the batch system as written: [[HH:]MM:]SS,
    with Slurm's D-HH[:MM[:SS]] too where `days`, and PBS's .fraction of a
    second where `fractions`; a number alone is what the batch system makes
    of it (`number`: seconds, or Slurm's minutes). More than 0: 0 and -1 are
    no limit at all to some of them."""

    number: str = "seconds"
    days: bool = False
    fractions: bool = False
    text: ClassVar[bool] = True

    @property
    def accepts(self) -> str:
        forms = (
            "[D-]HH:MM:SS, MM:SS or D-HH[:MM]"
            if self.days
            else "[[HH:]MM:]SS[.fraction]"
            if self.fractions
            else "[[HH:]MM:]SS"
        )
        return f"a time limit such as '01:30:00' ({forms}) or a whole number of {self.number}, more than 0"

    def __call__(self, value):
        if _is_int(value):
            value = str(int(value))
        if not isinstance(value, str):
            raise Refused(_a(value))
        days, fraction = r"([0-9]+-)?" if self.days else "", r"(\.[0-9]+)?" if self.fractions else ""
        pattern = days + r"[0-9]+(:[0-9]+){0,2}" + fraction
        if not re.fullmatch(pattern, value) or not value.strip("0:-."):
            raise Refused()
        return value


@dataclass(frozen=True)
class Flag:
    """True or False: a string such as 'no' is true to `if`, and refused."""

    accepts = "True or False (a bool)"

    def __call__(self, value):
        if not isinstance(value, bool):
            raise Refused(_a(value))
        return value


@dataclass(frozen=True)
class Choice:
    """One of a few words, spelled exactly: 'LOGIN' is not a place jqref knows."""

    choices: tuple[str, ...]

    @property
    def accepts(self) -> str:
        return " or ".join(map(repr, self.choices))

    def __call__(self, value):
        if not isinstance(value, str) or value not in self.choices:
            raise Refused()
        return value


@dataclass(frozen=True)
class Text:
    """A string on a single line, matching `pattern` if given; `paths`: an
    os.PathLike too (a pathlib.Path), `numbers`: an int too (YAML reads
    ``account: 1234`` as one), both taken as their text."""

    accepts: str = "a string on a single line"
    pattern: str | None = None
    paths: bool = False
    numbers: bool = False
    text: ClassVar[bool] = True

    def __call__(self, value):
        if self.paths and isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif self.numbers and _is_int(value):
            value = str(int(value))
        if not isinstance(value, str):
            raise Refused(_a(value))
        if not value.strip():
            raise Refused("empty" if not value else "blank")
        if _CONTROL.search(value):
            raise Refused("a line break or control character")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise Refused()
        return value


@dataclass(frozen=True)
class Strings:
    """A list (or tuple) of strings, each a single line; `sets`: a set too,
    where order means nothing. A lone string is refused rather than read as
    its characters, as dask-jobqueue reads it (``set("--time")``).

    `dicts`: a dict too, read as dask-jobqueue reads one there (its own tests
    pass ``job_extra_directives={"new_param": "2"}``): its keys are the list,
    and a warning says which values go unused."""

    sets: bool = False
    dicts: bool = False
    accepts = "a list of strings, each a single line"

    def __call__(self, value):
        if isinstance(value, str):
            raise Refused(f"a single string; as a list: [{_shown(value)}]")
        if self.dicts and isinstance(value, collections.abc.Mapping):
            unused = {key: item for key, item in value.items() if item not in (None, "", True)}
            if unused:
                warnings.warn(
                    f"a dict of directives is read as dask-jobqueue reads it, its keys one directive "
                    f"each; its values are not used: {_shown(unused)}; give a list of lines instead",
                    IgnoredValuesWarning,
                    stacklevel=2,
                )
            value = list(value)
        containers = (list, tuple, set, frozenset) if self.sets else (list, tuple)
        if not isinstance(value, containers):
            raise Refused(_a(value))
        for item in value:
            if not isinstance(item, str):
                raise Refused(f"the item {_shown(item)} is {_a(item)}")
            if _CONTROL.search(item):
                raise Refused(f"the item {_shown(item)} has a line break or control character")
        return list(value)


@dataclass(frozen=True)
class Mapping:
    """A dict whose keys are strings matching `keys`, and whose values are
    of the `values` types (any when None); string values on a single line;
    `fields`: the kinds of some keys' values."""

    accepts: str
    keys: str = r".+"
    values: tuple[type, ...] | None = None
    fields: tuple[tuple[str, Any], ...] = ()

    def __call__(self, value):
        if isinstance(value, (list, tuple)) and not value:
            return {}  # none, as dask-jobqueue reads any empty value here
        if not isinstance(value, collections.abc.Mapping):
            raise Refused(_a(value))
        for key, item in value.items():
            if not isinstance(key, str) or not re.fullmatch(self.keys, key):
                raise Refused(f"the key {_shown(key)}")
            if self.values is not None and (
                not isinstance(item, self.values) or (isinstance(item, bool) and bool not in self.values)
            ):
                raise Refused(f"the value of {key!r} is {_a(item)}")
            if isinstance(item, str) and _CONTROL.search(item):
                raise Refused(f"the value of {key!r} has a line break or control character")
        for key, kind in self.fields:
            if value.get(key) is not None:
                try:
                    kind(value[key])
                except Refused:
                    raise Refused(f"{key!r} must be {kind.accepts}") from None
        return dict(value)


@functools.cache
def _protocols() -> tuple[str, ...]:
    """The comm protocols distributed has, its plugins' too; not inproc, which
    connects only within one process."""
    plugins = {entry.name for entry in entry_points(group="distributed.comm.backends")}
    return tuple(sorted((set(backends) | plugins) - {"inproc"}))


@dataclass(frozen=True)
class Protocol:
    """A comm protocol distributed has ('tcp', or 'tls://' as dask-jobqueue
    writes it): with any other, every worker fails as it starts."""

    text: ClassVar[bool] = True

    @property
    def accepts(self) -> str:
        return "a protocol distributed has: " + ", ".join(f"'{name}://'" for name in _protocols())

    def __call__(self, value):
        if not isinstance(value, str):
            raise Refused(_a(value))
        if value.removesuffix("://") not in _protocols():
            raise Refused()
        return value


@dataclass(frozen=True)
class Name:
    """A queue or account: a string on a single line, or an int (YAML reads
    ``account: 1234`` as one) taken as its digits. A list of one name is
    that name and an empty list none, as dask-jobqueue's own tests pass
    them (``account=["x"]``, which it would write as ``-A ['x']``)."""

    accepts = "a name on a single line (a str; an int counts as its digits)"
    text: ClassVar[bool] = True

    def __call__(self, value):
        if isinstance(value, (list, tuple)) and len(value) <= 1:
            if not value:
                return None
            value = value[0]
        if _is_int(value):
            value = str(int(value))
        return LINE(value)


@dataclass(frozen=True)
class SSHDestination:
    """``[user@]host[:port]`` (``ssh://`` in front allowed, ``[address]:port``
    for IPv6), parsed to (user or None, host, port or None). The user is
    everything before the last @, as OpenSSH reads it (``alice@corp@login``),
    but no part of it may be empty: ``user@@host`` is a slip."""

    accepts = "an SSH destination, [user@]host[:port], or a Host alias from ~/.ssh/config"

    def __call__(self, value):
        if not isinstance(value, str):
            raise Refused(_a(value))
        destination = value.removeprefix("ssh://")
        if not destination or re.search(r"[\s\x00-\x1f\x7f]", destination):
            raise Refused("empty" if not destination else "whitespace or a control character")
        user, at, host = destination.rpartition("@")
        if at and not all(user.split("@")):
            raise Refused("an empty user, or an empty part between @s")
        port = None
        bracketed = re.fullmatch(r"\[([^\[\]]+)\](?::(.*))?", host)
        if bracketed:
            host, port = bracketed.groups()
        elif host.count(":") == 1:  # more: an IPv6 address, without a port
            host, _, port = host.partition(":")
        if not host or "/" in host or host.startswith("-"):
            raise Refused("no host" if not host else f"the host {host!r}")
        if port is not None:
            try:
                port = Port()(port)
            except Refused:
                raise Refused(f"the port {port!r} is not from 1 to 65535") from None
        return user or None, host, port


# ---- the tables ------------------------------------------------------------

FLAG = Flag()
LINE = Text()
PATH = Text("a path on a single line (a str or a pathlib.Path)", paths=True)
#: Queue, account: what the batch system cannot take it refuses at
#: submission, naming it; jqref keeps the value from becoming more than one.
NAME = Name()
STRINGS = Strings()
SIZE = ByteSize()

#: Every scheduler section's keys (jqref.yaml's `common`), config spelling.
OPTIONS: dict[str, Any] = {
    "name": LINE,
    "cores": WholeNumber("a whole number of cores"),
    "memory": SIZE,
    "processes": WholeNumber("a whole number of worker processes"),
    "python": Text("an interpreter command on a single line (a str or a pathlib.Path)", paths=True),
    "interface": Text("a network interface name such as 'ib0', one word (a str)", r"\S+"),
    "nanny": FLAG,
    "protocol": Protocol(),
    "death-timeout": Duration(),
    "local-directory": PATH,
    "shared-temp-directory": PATH,
    # Run as `python -m <worker_command>`: the first word must be a module's name.
    "worker-command": Text(
        "a Python module's name such as 'distributed.cli.dask_worker', then any arguments",
        r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\s.*)?",
    ),
    "log-directory": PATH,
    "shebang": Text("a line starting with #! and naming an interpreter, such as '#!/usr/bin/env bash'", r"#!\s*\S.*"),
    "queue": NAME,
    "account": NAME,
    "walltime": Walltime(),
    "worker-extra-args": STRINGS,
    "job-extra-directives": Strings(dicts=True),
    "job-directives-skip": Strings(sets=True),
    "job-script-prologue": STRINGS,
    "job-script-epilogue": STRINGS,
    "submit-command-extra": STRINGS,
    "cancel-command-extra": STRINGS,
    "cancel-grace-period": Duration(minimum=0),
    "lifetime-margin": Duration(minimum=0),
    "scheduler-options": Mapping(
        "a dict of the Dask scheduler's keyword arguments",
        r"[A-Za-z_]\w*",
        fields=(("port", WholeNumber("a port number (0: any free one)", 0, 65535)),),
    ),
    "scheduler-on": Choice(("client", "login", "job")),
    "scheduler-job": Mapping(
        "a dict of the scheduler's job's cores, memory, walltime, queue and start_timeout",
        r"cores|memory|walltime|queue|start_timeout",
        fields=(("cores", WholeNumber("a whole number of cores")), ("memory", SIZE), ("queue", NAME)),
    ),
    "detach": FLAG,
    "idle-timeout": Duration(),
    # Each poll runs a batch command: 10 a second is already a lot for a batch server.
    "poll-interval": Duration(minimum=0.1),
    "max-jobs": WholeNumber("a whole number of jobs"),
    "arrays": FLAG,
    "max-array-size": WholeNumber("a whole number of array elements"),
}

#: What a scheduler section adds to the common keys, or reads differently.
SCHEDULER_OPTIONS: dict[str, dict[str, Any]] = {
    "slurm": {
        "walltime": Walltime(number="minutes", days=True),
        "job-cpu": WholeNumber("a whole number of CPUs"),
        # Slurm's own words, passed as written: MB, or a K/M/G/T suffix (it reads
        # the letter only: 16GB and 16GiB are 16G); 0 is all of a node's.
        "job-mem": Text(
            "a Slurm --mem value such as '4000' (MB), '16G' or 0 (all of a node's), whole numbers",
            r"[0-9]+([KMGTkmgt](i?B)?)?",
            numbers=True,
        ),
    },
    "sge": {
        "pe": Text("a parallel environment name such as 'smp', one word", r"\S+"),
        "memory-resource": Text("a resource name such as 'mem_free' or 'h_vmem'", r"[A-Za-z_][\w.-]*"),
        "resource-spec": LINE,
    },
    "htcondor": {
        "disk": SIZE,
        "environment": Mapping(
            "a dict of environment variables, names to strings or numbers", r"[A-Za-z_][A-Za-z0-9_]*", (str, int, float)
        ),
        "job-extra-directives": Mapping(
            "a dict of submit commands such as {'+ProjectName': '\"x\"'}", r"[^\s=]+", (str, int, float, bool)
        ),
    },
    "pbs": {
        "walltime": Walltime(fractions=True),
        "resource-type": Choice(("select", "nodes")),
        "resource-spec": LINE,
    },
    "local": {
        "resource-spec": LINE,
    },
}

#: The section named by config_name (`jobqueue.<config_name>`).
CONFIG_NAME = Text("a dask config section name such as 'slurm-gpu'", r"[\w.-]+")

#: The cluster's keywords that are in no config section.
CLUSTER_KEYWORDS: dict[str, Any] = {
    "n_workers": WholeNumber("a whole number of workers", minimum=0),
    "name": LINE,
    "scheduler_options": OPTIONS["scheduler-options"],
    "asynchronous": FLAG,
    "ssh": SSHDestination(),
}


def checks_for(section: str) -> dict[str, Any]:
    """The kind of every key of `section` (a jqref.yaml section), config spelling."""
    return {**OPTIONS, **SCHEDULER_OPTIONS.get(section, {})}


def check_keywords(**given: Any) -> None:
    """Check the cluster keywords of `CLUSTER_KEYWORDS` that are given (not None)."""
    for name, value in given.items():
        if value is not None:
            check(name, value, CLUSTER_KEYWORDS[name])
