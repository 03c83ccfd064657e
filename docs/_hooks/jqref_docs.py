"""What the documentation site generates, as pure functions, and the MkDocs hooks that use them.

- The options reference, from ``jqref/jqref.yaml``: its keys, their values and
  their end-of-line comments are the one source of the defaults and their
  meaning. A key without a comment stops the build, naming it.
- The cluster classes' docstrings as ``help()`` shows them: jqref composes them
  when each class is made (``JobQueueCluster.__init_subclass__`` calls
  ``jqref.docstrings.cluster_docstring``); the API reference reads the source
  without importing it, so `cluster_docstrings` composes them the same way from
  the source (``docs/_hooks/griffe_jqref.py`` puts them in place, and
  ``tests/unit/test_docs_options.py`` checks they equal the classes' ``__doc__``).
- Pages that show a file kept elsewhere in the repository (the changelog).

Nothing here imports MkDocs, griffe or jqref, so the unit tests run it in the
development environment. MkDocs loads this file as hooks (``hooks:`` in
mkdocs.yml); the ``on_*`` functions at the end are those hooks.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pathlib
import re
from dataclasses import dataclass

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
OPTIONS_FILE = ROOT / "jqref" / "jqref.yaml"
PACKAGE = ROOT / "jqref"

#: The sections of jqref.yaml as the reference names them, in its order.
SECTION_TITLES = {
    "slurm": "SLURM",
    "sge": "SGE (Grid Engine)",
    "htcondor": "HTCondor",
    "pbs": "PBS (OpenPBS, PBS Professional, Torque)",
    "local": "Local (processes, no batch system)",
}


class OptionsFileError(ValueError):
    """jqref.yaml is not what the reference can be generated from (a key without its comment, say)."""


@dataclass(frozen=True)
class Option:
    key: str  # as the config spells it: `death-timeout`
    default: str  # the value as jqref.yaml writes it: `60`, `null`, `"00:30:00"`
    meaning: str  # the key's end-of-line comment
    line: int  # in jqref.yaml, from 1

    @property
    def keyword(self) -> str:
        """The keyword argument that sets it, as jqref/config.py reads it (`job_name` for `name`)."""
        return "job_name" if self.key == "name" else self.key.replace("-", "_")


@dataclass(frozen=True)
class Section:
    name: str  # `slurm`: the config section is `jqref.slurm` (or dask-jobqueue's `jobqueue.slurm`)
    merges_common: bool  # whether it takes the common block's keys (`<<: *common`)
    own: tuple[Option, ...]  # the keys it sets itself: its scheduler's own, and common keys with another default


@dataclass(frozen=True)
class OptionsFile:
    common: tuple[Option, ...]  # the keys every section takes (`common: &common`)
    sections: dict[str, Section]

    def options(self, section: str) -> dict[str, Option]:
        """Every key of `section` as dask's config sees it: the common block, then its own keys over it."""
        s = self.sections[section]
        return {o.key: o for o in (*(self.common if s.merges_common else ()), *s.own)}

    def overrides(self, section: str) -> set[str]:
        """The keys `section` sets itself that the common block has too."""
        s = self.sections[section]
        return {o.key for o in s.own} & {o.key for o in self.common} if s.merges_common else set()


def _split_comment(text: str) -> tuple[str, str | None]:
    """A YAML line's text before its end-of-line comment, and the comment: a `#`
    after whitespace and outside quotes (`shebang: "#!/usr/bin/env bash"` has none)."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), None


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_<-]+):(?P<rest>.*)$")


def read_options(text: str) -> OptionsFile:
    """The keys of jqref.yaml (`text`), each with its default and meaning.

    The file is one block of keys every section shares (``common: &common``) and
    a ``jqref:`` mapping of sections that merge it (``<<: *common``) and add or
    replace keys. Raises `OptionsFileError` naming every key without an
    end-of-line comment, and if what was read differs from what YAML reads
    (a key the line reader missed, a value it misread).
    """
    common: dict[str, Option] = {}
    own: dict[str, dict[str, Option]] = {}
    merges: dict[str, bool] = {}
    top = section = None
    uncommented: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        body, comment = _split_comment(raw)
        if not body.strip():
            continue
        match = _KEY.match(body)
        if match is None:
            raise OptionsFileError(f"jqref.yaml:{number}: not a `key: value` line: {raw!r}")
        indent, key, value = len(match["indent"]), match["key"], match["rest"].strip()
        if indent == 0:
            top, section = key, None
            continue
        if top == "jqref" and indent == 2:
            section = key
            own[section], merges[section] = {}, False
            continue
        if top == "common" and indent == 2:
            block, where = common, ""
        elif top == "jqref" and indent == 4 and section is not None:
            block, where = own[section], f", section {section}"
        else:
            raise OptionsFileError(f"jqref.yaml:{number}: a key where none is expected: {raw!r}")
        if key == "<<":
            if value != "*common" or block is common:
                raise OptionsFileError(f"jqref.yaml:{number}: sections merge only the common block: {raw!r}")
            merges[section] = True
            continue
        if not comment:
            uncommented.append(f"{key} (line {number}{where})")
        block[key] = Option(key, value, comment or "", number)
    if uncommented:
        raise OptionsFileError(
            "jqref.yaml: every key needs an end-of-line comment saying what it means (the options reference "
            f"is generated from them); none on: {', '.join(uncommented)}"
        )
    found = OptionsFile(
        tuple(common.values()),
        {name: Section(name, merges[name], tuple(keys.values())) for name, keys in own.items()},
    )
    _check_against_yaml(text, found)
    return found


def _check_against_yaml(text: str, found: OptionsFile) -> None:
    """What the line reader found must be what YAML (and so jqref's config) reads."""
    loaded = yaml.safe_load(text)["jqref"]
    if set(loaded) != set(found.sections):
        raise OptionsFileError(f"jqref.yaml: sections {sorted(loaded)} were read as {sorted(found.sections)}")
    for name in found.sections:
        read = found.options(name)
        if set(read) != set(loaded[name]):
            missed = sorted(set(loaded[name]) ^ set(read))
            raise OptionsFileError(f"jqref.yaml: keys of section {name} misread by the reference: {missed}")
        for key, option in read.items():
            if yaml.safe_load(option.default) != loaded[name][key]:
                raise OptionsFileError(
                    f"jqref.yaml:{option.line}: {key}'s value {option.default!r} was misread "
                    f"(YAML reads {loaded[name][key]!r} in section {name})"
                )


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a `|` would end the cell."""
    return text.replace("|", "\\|")


def _table(options, replaced: set[str] = frozenset()) -> list[str]:
    rows = ["| key | keyword argument | default | meaning |", "|---|---|---|---|"]
    for o in options:
        meaning = o.meaning + (" (instead of the common default)" if o.key in replaced else "")
        rows.append(f"| `{o.key}` | `{o.keyword}` | {_cell(f'`{o.default}`')} | {_cell(meaning)} |")
    return rows


def options_reference(text: str) -> str:
    """The options reference in Markdown: a table of the keys every section
    has, then one per section of the keys it adds or sets otherwise."""
    found = read_options(text)
    lines = [
        "## Keys of every section",
        "",
        "Every scheduler section below has these keys, with these defaults unless its own table sets another.",
        "",
        *_table(found.common),
    ]
    for name, section in found.sections.items():
        title = SECTION_TITLES.get(name, name)
        lines += ["", f"## {title}: `jqref.{name}`", ""]
        if section.merges_common:
            lines += ["The keys of every section, and these:" if section.own else "The keys of every section.", ""]
        if section.own:
            lines += _table(section.own, found.overrides(name))
    return "\n".join(lines) + "\n"


# ---- the cluster classes' docstrings ------------------------------------------------------------


def _docstrings_module(package: pathlib.Path):
    """jqref/docstrings.py on its own: it needs nothing but the standard library, jqref's package needs distributed."""
    spec = importlib.util.spec_from_file_location("_jqref_docstrings", package / "docstrings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _constant(node: ast.ClassDef, name: str):
    """The value of a class-level assignment of a constant, `name = "..."`, if any."""
    for statement in node.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
        value = getattr(statement, "value", None)
        for target in targets:
            if isinstance(target, ast.Name) and target.id == name and value is not None:
                return value
    return None


def cluster_docstrings(package: pathlib.Path = PACKAGE) -> dict[str, str]:
    """The docstring of each cluster class as jqref makes it when the class is
    made (`JobQueueCluster.__init_subclass__`), found in the source: a class that
    declares its ``job_cls`` gets ``cluster_docstring(its docstring, its name
    less "Cluster", the job class's config_name, the job class's parameter_docs)``,
    unless its docstring already has a Parameters section. Keyed by
    ``module.Class`` (``jqref.slurm.SLURMCluster``)."""
    compose = _docstrings_module(package).cluster_docstring
    found = {}
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        for node in classes.values():
            job = _constant(node, "job_cls")
            if not isinstance(job, ast.Name) or job.id not in classes:
                continue
            # As Python 3.13 compiles it: the indentation of the lines after the first removed.
            doc = ast.get_docstring(node, clean=True) or ""
            if "\nParameters\n" in doc:
                continue
            job_cls = classes[job.id]
            config_name = _constant(job_cls, "config_name")
            parameter_docs = _constant(job_cls, "parameter_docs")
            found[f"jqref.{path.stem}.{node.name}"] = compose(
                doc,
                node.name.removesuffix("Cluster"),
                ast.literal_eval(config_name) if config_name is not None else "",
                ast.literal_eval(parameter_docs) if parameter_docs is not None else "",
            )
    return found


# ---- MkDocs hooks ---------------------------------------------------------------------------------

#: Where a page says "put the generated text here".
OPTIONS_MARKER = "<!-- options reference: generated from jqref/jqref.yaml -->"
CHANGELOG_MARKER = "<!-- CHANGELOG.md -->"

#: A relative link to a file (not a web address, nor an anchor alone).
_RELATIVE_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>(?![a-z]+:|#)[^)#\s]+)(?P<anchor>#[^)\s]*)?\)")


def repository_links_as_paths(markdown: str, page: str, docs_dir: pathlib.Path = ROOT / "docs") -> str:
    """Links from `page` (a path under `docs_dir`) to repository files outside
    the site (docs/compat.md's ``[`differences.yaml`](../tests/...)``) as the
    file's path in the repository, which a reader can open in a checkout: the
    site has no copy to link to. Links within the site are left as they are."""
    docs_dir = docs_dir.resolve()

    def path(match: re.Match) -> str:
        target = (docs_dir / page).parent.joinpath(match["target"]).resolve()
        if target.is_relative_to(docs_dir):
            return match[0]
        return f"{match['text']} (`{os.path.relpath(target, ROOT)}` in the repository)"

    return _RELATIVE_LINK.sub(path, markdown)


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if OPTIONS_MARKER in markdown:
        try:
            reference = options_reference(OPTIONS_FILE.read_text())
        except OptionsFileError as e:
            from mkdocs.exceptions import PluginError  # MkDocs is there when it runs its hooks

            raise PluginError(str(e)) from None
        markdown = markdown.replace(OPTIONS_MARKER, reference)
    if CHANGELOG_MARKER in markdown:
        markdown = markdown.replace(CHANGELOG_MARKER, (ROOT / "CHANGELOG.md").read_text())
    return repository_links_as_paths(markdown, page.file.src_path, pathlib.Path(config["docs_dir"]))
