"""The rendering policy: how option values become words of the job's shell.

dask-jobqueue pastes values into the job script as they are, so the job's
shell expands ``local_directory="$TMPDIR"`` and splits
``worker_extra_args=["--resources GPU=2"]`` into words; it would run
``$(rm -rf ~)`` just as readily. jqref keeps the first two and never the
third: *no value can run a command it was not meant to*.

- **Literal** values (addresses, numbers, interfaces) are single-quoted:
  the shell sees exactly the value.
- **Worker names** are one word in which ``$NAME`` and ``${NAME}`` expand,
  as dask-jobqueue lets them (``name="run-$SLURM_ARRAY_TASK_ID"``).
- **Path** values (``local_directory``) are one word in which ``$NAME``,
  ``${NAME}`` and a leading ``~`` or ``~/`` expand in the job's shell, where
  per-job variables such as ``$TMPDIR`` or ``$SLURM_JOB_ID`` exist. The
  value is not split: a space stays part of the path.
- **Command** values (``python``, ``worker_command``, each item of
  ``worker_extra_args``) are split into words as a shell splits them
  (whitespace separates, single quotes keep text literal, double quotes
  group, a backslash escapes one character), and each word expands
  references as a path does.

Everything else stays inert: command substitution (``$(...)``, backticks),
``;``, ``|``, ``&``, redirections, globs, and ``$`` in any other form
(``$1``, ``$$``, ``${X:-y}``) reach the program as the characters they are.
References are rendered inside double quotes, so an expanded value is never
split or globbed again. Line breaks are refused in all of them.
``job_script_prologue`` lines are the user's own shell and are not touched.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: `$NAME` or `${NAME}`: the only expansions a value may ask for.
_REFERENCE = re.compile(rf"\$(?:({_NAME})|\{{({_NAME})\}})")
#: `~` or `~user` ending the word or followed by a slash (the slash is part of the match).
_TILDE = re.compile(r"~[A-Za-z0-9._-]*(?:/|$|(?=[ \t]))")
#: What a backslash must escape inside double quotes to stay literal.
_DOUBLE_QUOTE_SPECIAL = re.compile(r'([\\"`$])')


@dataclass(frozen=True)
class Reference:
    """A variable the job's shell expands."""

    name: str


Part = str | Reference


def single_line(what: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} must be a single line, got {value!r}")
    return value


def literal(value: object) -> str:
    """The value as one shell word, exactly."""
    return shlex.quote(str(value))


def path(what: str, value: object) -> str:
    """A path-like value as one shell word: references and a leading tilde expand."""
    text = single_line(what, str(value))
    tilde = _TILDE.match(text)
    prefix = tilde.group(0) if tilde else ""
    return _render(prefix, _references(text[len(prefix) :]))


def name(what: str, value: object) -> str:
    """A name as one shell word in which references expand (a worker named
    ``"run-$SLURM_ARRAY_TASK_ID"``, as dask-jobqueue allows), nothing else."""
    return _render("", _references(single_line(what, str(value))))


def command(what: str, items: Iterable[object]) -> list[str]:
    """Command items split into shell words as a shell would, without executing anything."""
    words: list[str] = []
    for item in items:
        words += [_render(prefix, parts) for prefix, parts in _split(what, single_line(what, str(item)))]
    return words


def _references(text: str) -> list[Part]:
    """Literal text with `$NAME`/`${NAME}` picked out."""
    parts: list[Part] = []
    position = 0
    for match in _REFERENCE.finditer(text):
        parts += [text[position : match.start()], Reference(match.group(1) or match.group(2))]
        position = match.end()
    parts.append(text[position:])
    return [part for part in parts if part != ""]


def _split(what: str, text: str) -> list[tuple[str, list[Part]]]:
    """Shell-like word splitting. Each word is a tilde prefix (unquoted `~`,
    `~user/`, or '') and its parts; quoting decides what may expand."""
    words: list[tuple[str, list[Part]]] = []
    parts: list[Part] | None = None  # None: between words
    prefix = ""
    i = 0

    def add(part: Part) -> None:
        nonlocal parts
        if parts is None:
            parts = []
        parts.append(part)

    while i < len(text):
        char = text[i]
        if char in " \t":
            if parts is not None:
                words.append((prefix, parts))
            parts, prefix = None, ""
            i += 1
        elif char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError(f"{what}: unbalanced single quote in {text!r}")
            add(text[i + 1 : end])
            i = end + 1
        elif char == '"':
            i = _double_quoted(what, text, i + 1, add)
        elif char == "\\":
            if i + 1 == len(text):
                raise ValueError(f"{what}: a backslash ends {text!r} with nothing to escape")
            add(text[i + 1])
            i += 2
        elif char == "~" and parts is None and (tilde := _TILDE.match(text, i)):
            prefix, parts = tilde.group(0), []
            i = tilde.end()
        else:
            i = _reference_or_character(text, i, add)
    if parts is not None:
        words.append((prefix, parts))
    return words


def _reference_or_character(text: str, i: int, add: Callable[[Part], None]) -> int:
    """Add the `$NAME`/`${NAME}` at `i`, or else the one character there; return the next index."""
    reference = _REFERENCE.match(text, i)
    if reference:
        add(Reference(reference.group(1) or reference.group(2)))
        return reference.end()
    add(text[i])
    return i + 1


def _double_quoted(what: str, text: str, i: int, add: Callable[[Part], None]) -> int:
    """Read a double-quoted run starting after its quote; return the index after the closing one."""
    add("")  # "" is a word of its own, as in the shell
    while i < len(text):
        char = text[i]
        if char == '"':
            return i + 1
        if char == "\\" and i + 1 < len(text) and text[i + 1] in '\\"`$':
            add(text[i + 1])
            i += 2
        else:
            i = _reference_or_character(text, i, add)
    raise ValueError(f"{what}: unbalanced double quote in {text!r}")


def _render(prefix: str, parts: list[Part]) -> str:
    """Shell text for one word: single quotes when nothing expands, otherwise
    double quotes with every special character but the references escaped."""
    texts = [part for part in parts if isinstance(part, str)]
    if len(texts) == len(parts):
        rest = "".join(texts)
        return prefix + (shlex.quote(rest) if rest or not prefix else "")
    body = "".join(
        "${%s}" % part.name if isinstance(part, Reference) else _DOUBLE_QUOTE_SPECIAL.sub(r"\\\1", part)
        for part in parts
    )
    return f'{prefix}"{body}"'
