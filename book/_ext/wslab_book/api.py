"""The package reference: one page per module (autodoc), and an index of the public names.

The docstrings stay the source of truth: these pages hold nothing but directives. The index
lists ``wslab.__all__`` in its order, each name linked to where its module documents it (a
learner writes ``wslab.serve``; its docstring lives in ``wslab.server.background``); viewcode adds the
links to the source.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pkgutil
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.transforms import SphinxTransform

from .files import sync_pages

__all__ = ["ImplicitDocstringSections", "modules", "index_page", "members_of", "module_page", "write_pages"]

#: Modules that are not part of the reference (the command line has its own pages).
SKIP = {"wslab.__main__"}


def modules() -> list[str]:
    """Every module of the package, sorted (``wslab.battery.cases.control`` included)."""
    import wslab

    found = {info.name for info in pkgutil.walk_packages(wslab.__path__, "wslab.")}
    return sorted(found - SKIP)


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    first = " ".join(doc.strip().split("\n\n", 1)[0].split())
    first = re.sub(r":[\w:]+:`~?([^`]+)`", r"`\1`", first)  # reST roles: plain code in a markdown table
    return first.replace("|", "\\|")


def _row(name: str, obj: object) -> str:
    if inspect.ismodule(obj):
        return f"| {{py:mod}}`wslab.{name} <{obj.__name__}>` | module | {_summary(obj)} |"
    module = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or callable(obj)) and module and module.startswith("wslab"):
        kind = "class" if inspect.isclass(obj) else "function"
        qual = getattr(obj, "__qualname__", name)
        return f"| {{py:obj}}`wslab.{name} <{module}.{qual}>` | {kind} | {_summary(obj)} |"
    return f"| {{py:data}}`wslab.{name}` | {type(obj).__name__} | described below |"


def index_page() -> str:
    import wslab

    names = list(wslab.__all__)
    rows = [_row(name, getattr(wslab, name)) for name in names]
    data = [n for n in names if not (inspect.ismodule(getattr(wslab, n)) or callable(getattr(wslab, n)))]
    lines = [
        "# `wslab`: the public names",
        "",
        "What `import wslab` gives a lesson: every name in `wslab.__all__`, in its order, linked to",
        "the page of the module that defines it (with its docstring and a link to its source).",
        "",
        "```{eval-rst}",
        ".. automodule:: wslab",
        "   :no-members:",
        "```",
        "",
        "| name | kind | what it is |",
        "|---|---|---|",
        *rows,
        "",
    ]
    for name in data:
        lines += ["```{eval-rst}", f".. autodata:: wslab.{name}", "   :no-value:", "```", ""]
    lines += ["```{toctree}", ":hidden:", ":glob:", "", "wslab.*", "```", ""]
    return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def _assigned(module_name: str) -> frozenset[str]:
    """The names a module assigns at its top level (its own constants, not imported ones)."""
    import ast

    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return frozenset(names)


def _defined_in(name: str, obj: object, module_name: str) -> bool:
    """Whether ``obj`` belongs on ``module_name``'s page: where it is defined, so that a re-export
    is documented once, where it lives (viewcode's links back from the source need that too)."""
    if inspect.ismodule(obj):
        return False
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return getattr(obj, "__module__", None) == module_name
    return name in _assigned(module_name)


def members_of(name: str) -> list[str]:
    """What ``name``'s page documents: its ``__all__`` names defined there, in that order, then
    the package's public names defined there but missing from its ``__all__``."""
    import wslab

    module = importlib.import_module(name)
    listed = [n for n in getattr(module, "__all__", []) if _defined_in(n, getattr(module, n, None), name)]
    for public in wslab.__all__:
        obj = getattr(wslab, public)
        qual = getattr(obj, "__qualname__", public)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and obj.__module__ == name and qual not in listed:
            listed.append(qual)
    return listed


def module_page(name: str) -> str:
    members = members_of(name)
    opts = f"   :members: {', '.join(members)}\n" if members else "   :no-members:\n"
    return f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n{opts}```\n"


def write_pages(outdir: Path) -> list[str]:
    """Write ``index.md`` and ``<module>.md`` for every module into ``outdir``; return the modules."""
    names = modules()
    sync_pages(outdir, {"index.md": index_page(), **{f"{n}.md": module_page(n) for n in names}})
    return names


class ImplicitDocstringSections(SphinxTransform):
    """Headings inside docstrings ("Design note" in many modules) are not labels of the book.

    Parsed into a MyST page they come out as explicit targets, and every module after the first
    would warn "duplicate label design note"; here they become implicit, as in a reST page.
    """

    default_priority = 400

    def apply(self, **kwargs: object) -> None:
        if not self.env.docname.startswith("book/_generated/api/"):
            return
        top = next(iter(self.document.findall(nodes.section)), None)
        for section in self.document.findall(nodes.section):
            if section is not top:
                for name in section["names"]:
                    self.document.nametypes[name] = False


def skip_code_not_written_here(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Skip a member whose code lives outside wslab: a method a library generates on a subclass
    (matplotlib gives every Artist subclass its own ``set``, with matplotlib's docstring and roles)."""
    try:
        func = inspect.unwrap(getattr(obj, "__func__", obj))  # a decorator's wrapper: judge what it wraps
    except ValueError:  # a cycle of __wrapped__
        return None
    code = getattr(func, "__code__", None)
    if code is not None and f"{os.sep}wslab{os.sep}" not in code.co_filename:
        return True
    return None
