"""A griffe extension: the API reference shows jqref's classes as ``help()`` does.

griffe reads jqref's source without importing it (MkDocs runs in the tools
venv, which has no distributed). Two things happen at import that the source
alone does not show, and this puts them in:

- each cluster class's docstring is composed when the class is made
  (``JobQueueCluster.__init_subclass__``): `jqref_docs.cluster_docstrings`
  composes it from the source the same way (a unit test checks they match);
- ``JobQueueCluster.__init__``'s private parameters (``_attached``, which
  ``attach`` passes) are not part of the API: left out of the signature.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import griffe


def _generator():
    path = pathlib.Path(__file__).with_name("jqref_docs.py")
    spec = importlib.util.spec_from_file_location("jqref_docs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class JqrefAtImport(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.name != "jqref":
            return
        for path, text in _generator().cluster_docstrings(pathlib.Path(pkg.filepath).parent).items():
            cls = pkg[path.removeprefix("jqref.")]
            old = cls.docstring
            cls.docstring = griffe.Docstring(
                text,
                lineno=old.lineno if old else None,
                endlineno=old.endlineno if old else None,
                parent=cls,
                parser=old.parser if old else None,
                parser_options=old.parser_options if old else None,
            )
        init = pkg["cluster.JobQueueCluster.__init__"]
        for parameter in [p.name for p in init.parameters if p.name.startswith("_")]:
            del init.parameters[parameter]
