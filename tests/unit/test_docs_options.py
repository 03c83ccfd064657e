"""The documentation's generated parts cover what the code has.

The options reference (docs/options.md) is generated from jqref/jqref.yaml by
docs/_hooks/jqref_docs.py: every key of every section must be in it, with its
comment as its meaning, and a key without a comment stops the build. The API
reference composes the cluster classes' docstrings from the source as jqref
composes them at import (`cluster_docstrings`): they must be the classes'
``__doc__``, and list every keyword each class accepts. No MkDocs here: the
generator is plain functions.
"""

from __future__ import annotations

import importlib.util
import inspect
import pathlib
import re
import sys

import pytest
import yaml

import jqref
from jqref.config import DEFAULTS, RENAMED, keyword

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPTIONS_FILE = ROOT / "jqref" / "jqref.yaml"
CLUSTERS = [jqref.SLURMCluster, jqref.SGECluster, jqref.HTCondorCluster, jqref.PBSCluster, jqref.LocalCluster]


def _generator():
    spec = importlib.util.spec_from_file_location("jqref_docs", ROOT / "docs" / "_hooks" / "jqref_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


docs = _generator()


def _tables(markdown: str) -> dict[str, dict[str, str]]:
    """The reference's tables, by heading: each row's key and its meaning cell."""
    tables: dict[str, dict[str, str]] = {}
    heading = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading = line[3:]
            tables[heading] = {}
        row = re.match(r"^\| `(?P<key>[^`]+)` \| `[^`]+` \| .* \| (?P<meaning>.*) \|$", line)
        if row and heading is not None:
            tables[heading][row["key"]] = row["meaning"]
    return tables


def test_the_options_reference_has_every_key_of_every_section_with_its_comment():
    text = OPTIONS_FILE.read_text()
    loaded = yaml.safe_load(text)["jqref"]
    tables = _tables(docs.options_reference(text))
    common = tables.pop("Keys of every section")
    assert set(loaded) == set(DEFAULTS)
    for section, keys in loaded.items():
        [own] = [rows for heading, rows in tables.items() if heading.endswith(f"`jqref.{section}`")]
        # A section's own table, and the common one for the keys it does not set itself.
        assert set(own) | set(common) >= set(keys), section
        assert not set(own) - set(keys), section
        for key in keys:
            meaning = own.get(key, common.get(key))
            assert meaning and meaning.strip(), (section, key)
    read = docs.read_options(text)
    for section, keys in loaded.items():
        options = read.options(section)
        assert list(options) == list(keys), section
        for key, value in keys.items():
            assert yaml.safe_load(options[key].default) == value, (section, key)


def test_the_keyword_column_is_the_keyword_jqref_reads():
    for option in docs.read_options(OPTIONS_FILE.read_text()).common:
        assert option.keyword == keyword(option.key)


def test_a_key_without_a_comment_fails_the_build_naming_it():
    text = OPTIONS_FILE.read_text()
    uncommented = re.sub(r"^(  nanny: true)\s*#.*$", r"\1", text, flags=re.M)
    uncommented = re.sub(r"^(    job-mem: null)\s*#.*$", r"\1", uncommented, flags=re.M)
    assert uncommented != text
    with pytest.raises(docs.OptionsFileError, match=r"nanny \(line \d+\).*job-mem \(line \d+, section slurm\)"):
        docs.options_reference(uncommented)


def test_a_hash_in_a_quoted_value_is_not_a_comment_and_a_misread_value_fails():
    read = docs.read_options(OPTIONS_FILE.read_text())
    shebang = read.options("slurm")["shebang"]
    assert shebang.default == '"#!/usr/bin/env bash"'
    assert shebang.meaning
    text = "common: &common\n  a: 1  # one\njqref:\n  s:\n    <<: *common\n    b: '2 #x'  # two\n"
    assert docs.read_options(text).options("s")["b"].default == "'2 #x'"
    with pytest.raises(docs.OptionsFileError, match="not a `key: value` line"):
        docs.read_options(text + "    - listed  # a list item the reader does not take\n")


def test_the_api_reference_composes_each_cluster_docstring_as_the_class_has_it():
    composed = docs.cluster_docstrings()
    assert set(composed) == {f"{cls.__module__}.{cls.__qualname__}" for cls in CLUSTERS}
    for cls in CLUSTERS:
        assert composed[f"{cls.__module__}.{cls.__qualname__}"] == cls.__doc__, cls.__name__


@pytest.mark.parametrize("cls", CLUSTERS, ids=lambda cls: cls.__name__)
def test_every_keyword_a_cluster_accepts_is_in_its_docstring(cls):
    job = cls.job_cls
    documented = set()
    parameters = cls.__doc__.split("\nParameters\n----------\n", 1)[1]
    for line in parameters.splitlines():
        match = re.match(r"^([a-z_][a-z0-9_, ]*) : ", line)
        if match:
            documented |= {name.strip() for name in match[1].split(",")}
    signature = {
        name
        for name, parameter in inspect.signature(cls).parameters.items()
        if not name.startswith("_") and parameter.kind is not parameter.VAR_KEYWORD
    }
    options = {keyword(key) for key in DEFAULTS[job.config_name]}
    assert signature | options <= documented, sorted((signature | options) - documented)
    assert documented <= signature | options, sorted(documented - signature - options)
    # dask-jobqueue's other names are named in the text before the parameters.
    for old in {**RENAMED, **job.renamed_options, **job.option_aliases}:
        assert f"``{keyword(old)}``" in cls.__doc__.split("\nParameters\n")[0], old
