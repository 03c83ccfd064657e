"""Configuration lookup: keyword argument, then `jqref.<section>`, then dask-jobqueue's `jobqueue.<section>`, then jqref's defaults."""

from __future__ import annotations

import pathlib
from typing import Any

import dask.config
import yaml

_DEFAULTS_FILE = pathlib.Path(__file__).with_name("jqref.yaml")
_MISSING = object()


def _load_defaults() -> dict[str, dict[str, Any]]:
    with _DEFAULTS_FILE.open() as f:
        return yaml.safe_load(f)["jqref"]


DEFAULTS = _load_defaults()


def _canonical(key: str) -> str:
    return key.replace("_", "-")


def lookup(section: str, key: str, value: Any = None) -> Any:
    """Resolve one option; `value` (a keyword argument) wins unless it is None."""
    if value is not None:
        return value
    if section not in DEFAULTS:
        raise ValueError(f"unknown jqref configuration section {section!r}")
    key = _canonical(key)
    for namespace in ("jqref", "jobqueue"):
        found = dask.config.get(f"{namespace}.{section}.{key}", default=_MISSING)
        if found is not _MISSING and found is not None:
            return found
    if key not in DEFAULTS[section]:
        raise KeyError(f"no jqref configuration key {section}.{key}")
    return DEFAULTS[section][key]
