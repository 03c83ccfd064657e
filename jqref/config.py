"""Options of one job class: keyword argument, then `jqref.<section>`, then
dask-jobqueue's `jobqueue.<section>`, then jqref's defaults.

The section is the job class's (`slurm`, `sge`, ...) or the ``config_name``
given, as in dask-jobqueue; the defaults are always the job class's, and
their keys (`jqref.yaml`) are the options that exist. dask-jobqueue's old
names are still read, with a FutureWarning naming the new one. A keyword
argument that is neither is refused with the closest known name; a config
key that is neither is warned about with the closest known name and
otherwise ignored, as dask-jobqueue ignores it: a site configuration that
starts a cluster there starts one here, and nothing is ignored silently.

Every value is checked as it is resolved, against what its option accepts
(`option_checks`): a keyword argument when the Options are made, a config
value when it is first read; so a wrong value stops the job or cluster that
is being made, with an error naming the option, the value and, for a config
value, the key it came from.
"""

from __future__ import annotations

import difflib
import functools
import pathlib
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import dask.config
import yaml

from .option_checks import CONFIG_NAME, check, checks_for

_DEFAULTS_FILE = pathlib.Path(__file__).with_name("jqref.yaml")
NAMESPACES = ("jqref", "jobqueue")

#: dask-jobqueue 0.9's deprecated names, on every scheduler: old key → new key.
RENAMED = {
    "extra": "worker-extra-args",
    "env-extra": "job-script-prologue",
    "header-skip": "job-directives-skip",
    "job-extra": "job-extra-directives",
}


class UnknownOptionError(TypeError, ValueError):
    """A keyword argument no job class knows: a TypeError, as Python's own, and
    a ValueError, as dask-jobqueue's clusters raise for it."""


class UnknownConfigKeyWarning(UserWarning):
    """A key in a config section that names no option: ignored."""


#: Keys a config section sets to null to ask for none at all (no time limit
#: directive, no death timeout), as dask-jobqueue reads them; for the others
#: null is the same as absent.
NULLABLE = {"walltime", "death-timeout"}
#: A key the config does not set (or sets only to dask-jobqueue's packaged default).
_ABSENT = object()
#: A keyword argument given a value that means none (`queue=""`): the config is not read for it.
_NONE = object()


@functools.cache
def _packaged_defaults(path: pathlib.Path) -> dict[str, dict[str, Any]]:
    return (yaml.safe_load(path.read_text()) or {}).get("jobqueue", {})


def dask_jobqueue_defaults(section: str) -> dict[str, Any]:
    """The defaults dask-jobqueue registers under `jobqueue.<section>` when it is
    imported (notebooks import both while migrating): not the user's settings."""
    location = getattr(sys.modules.get("dask_jobqueue"), "__file__", None)
    path = pathlib.Path(location).with_name("jobqueue.yaml") if location else None
    return _packaged_defaults(path).get(section, {}) if path and path.is_file() else {}


def _load_defaults() -> dict[str, dict[str, Any]]:
    with _DEFAULTS_FILE.open() as f:
        return yaml.safe_load(f)["jqref"]


DEFAULTS = _load_defaults()
# Registered with dask, as dask-jobqueue registers its own: `dask config get
# jqref.slurm` shows them, and a commented copy in the user's dask config
# folder shows what can be set.
dask.config.update_defaults({"jqref": DEFAULTS})
dask.config.ensure_file(source=str(_DEFAULTS_FILE))


def config_key(keyword: str) -> str:
    """The config spelling of a keyword: dashes, and `name` for `job_name` (as in jobqueue.yaml)."""
    key = keyword.replace("_", "-")
    return "name" if key == "job-name" else key


def keyword(key: str) -> str:
    return "job_name" if key == "name" else key.replace("-", "_")


def _closest(name: str, known: set[str]) -> str:
    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _empty(value: Any) -> bool:
    return (
        value is None
        or value is _ABSENT
        or value is _NONE
        or (isinstance(value, (list, tuple, dict, str)) and not value)
    )


class Options:
    """Resolves the options of `defaults_section`'s job class for one job or cluster.

    `renamed` are old names (config spelling) read with a FutureWarning,
    `aliases` other names for the same option read without one (dask-jobqueue's
    current name where jqref's differs).
    """

    def __init__(
        self,
        defaults_section: str,
        config_name: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        renamed: Mapping[str, str] | None = None,
        aliases: Mapping[str, str] | None = None,
        owner: str = "jqref",
    ):
        if defaults_section not in DEFAULTS:
            raise ValueError(f"unknown jqref configuration section {defaults_section!r}")
        self.defaults = DEFAULTS[defaults_section]
        self.checks = checks_for(defaults_section)
        if config_name is not None:
            check("config_name", config_name, CONFIG_NAME)
        self.section = config_name or defaults_section
        self.renamed = {**RENAMED, **(renamed or {})}
        self.aliases = dict(aliases or {})
        self.known = set(self.defaults) | set(self.renamed) | set(self.aliases)
        self.kwargs: dict[str, Any] = {}
        for name, value in (kwargs or {}).items():
            key = config_key(name)
            if key not in self.known:
                raise UnknownOptionError(
                    f"{owner} got an unexpected keyword argument {name!r}"
                    f"{_closest(name, {keyword(k) for k in self.known})}"
                )
            # Given, so checked now, whether or not it is read.
            checked = self._checked(key, value)
            self.kwargs[key] = _NONE if checked is None and value is not None else checked
        #: Options already resolved: the jobs of a cluster share its Options,
        #: so each reads the config once, and all see what the first saw.
        self._resolved: dict[str, Any] = {}
        for namespace in NAMESPACES:
            self._check_config(namespace)

    def _check_config(self, namespace: str) -> None:
        section = dask.config.get(f"{namespace}.{self.section}", default=None) or {}
        if not isinstance(section, Mapping):
            raise ValueError(
                f"the dask config {namespace}.{self.section} must be a mapping of options, got {section!r}"
            )
        for key, value in section.items():
            if value is not None and config_key(str(key)) not in self.known:
                warnings.warn(
                    f"unknown key {key!r} in the dask config section {namespace}.{self.section} is "
                    f"ignored{_closest(config_key(str(key)), self.known)}",
                    UnknownConfigKeyWarning,
                    stacklevel=4,
                )

    def _old_names(self, key: str) -> list[tuple[str, bool]]:
        """Other names of `key`, and whether each one is deprecated."""
        return [(old, True) for old, new in self.renamed.items() if new == key] + [
            (other, False) for other, new in self.aliases.items() if new == key
        ]

    def _read(self, source: Mapping[str, Any] | str, key: str) -> Any:
        """The value `source` sets for `key`: None if set to null, `_ABSENT` if not set."""
        if not isinstance(source, str):
            return source.get(key, _ABSENT)
        value = dask.config.get(f"{source}.{self.section}.{key}", default=_ABSENT)
        packaged = DEFAULTS.get(self.section, {}) if source == "jqref" else dask_jobqueue_defaults(self.section)
        default = packaged.get(key, _ABSENT)
        if value is not _ABSENT and type(value) is type(default) and value == default:  # 1 is not True here
            return _ABSENT  # a default registered with dask (jqref's, or dask-jobqueue's if imported): not the user's
        return value

    def _warn_renamed(self, source: Mapping[str, Any] | str, old: str, new: str, ignored: bool) -> None:
        if source is self.kwargs:
            what = f"{keyword(old)} has been renamed to {keyword(new)} (dask-jobqueue's old keyword)"
        else:
            what = f"config key {source}.{self.section}.{old} has been renamed to {new}"
        effect = "it is ignored because the new name is set" if ignored else "jqref still reads it"
        warnings.warn(f"{what}: {effect}; please use the new name", FutureWarning, stacklevel=5)

    def _checked(self, key: str, value: Any, source: Mapping[str, Any] | str | None = None) -> Any:
        """`value` as option `key` (or its old name) takes it, from `source` (a
        config namespace, or the keyword arguments); '' is null for a text
        option whose default is null, as dask-jobqueue reads it (`queue: ''`: none)."""
        current = self.renamed.get(key) or self.aliases.get(key) or key
        kind = self.checks[current]
        if value is None or (
            isinstance(value, str) and not value and getattr(kind, "text", False) and self.defaults.get(current) is None
        ):
            return None
        where = f" (dask config {source}.{self.section}.{key})" if isinstance(source, str) else ""
        return check(keyword(key), value, kind, where)

    def get(self, name: str, value: Any = None) -> Any:
        """One option; `value` (a keyword argument) wins unless it is None."""
        key = config_key(name)
        if value is not None:
            return self._checked(key, value)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(key)
        return self._resolved[key]

    def _resolve(self, key: str) -> Any:
        if key not in self.defaults:
            raise KeyError(f"no jqref option {keyword(key)!r}")
        for source in (self.kwargs, *NAMESPACES):
            found, found_key = self._read(source, key), key
            for old, deprecated in self._old_names(key):
                old_value = self._read(source, old)
                if old_value is None or old_value is _ABSENT:
                    continue
                if deprecated:
                    self._warn_renamed(source, old, key, ignored=not _empty(found))
                if _empty(found):
                    found, found_key = old_value, old
            if found is None and source is not self.kwargs and key in NULLABLE:
                return None
            if found is _NONE:
                return None
            if found is not None and found is not _ABSENT:
                return found if source is self.kwargs else self._checked(found_key, found, source)
        return self.defaults[key]
