"""The book's editions (English, and Chinese built from notebooks/zh-CN/), and the switch between them.

Design note
-----------
Each edition is its own Sphinx build over the same repository, made by ``book/build.py``: the
English one with conf.py as it is, into ``book/_build/html/``; the Chinese one with ``-t zh_CN``
(a Sphinx tag, which conf.py reads to set ``language = "zh_CN"`` and the pages below) into
``book/_build/html/zh-CN/``. Sphinx's own words (search, navigation, "previous", ...) come from its
zh_CN catalog; the few the book adds are in :data:`TEXT`.

A page keeps the docname of its source in both editions (``notebooks/zh-CN/00-...``,
``README.zh-CN``), so the relative links of the Chinese pages work as they do on GitHub. What pairs
the pages is :func:`counterpart`: a Chinese lesson with its English lesson, ``X.zh-CN.md`` with
``X.md``, the two start pages. On every page, ``html-page-context`` puts ``wslab_switch`` in the
template context (the other edition's page, or its start page when there is no counterpart), and
``_templates/wslab-language-switch.html`` shows it in the article header (the theme's
``article_header_end``). :class:`EditionLinks` points a link to a page of the other edition (the
English README's "简体中文", the Chinese README's lessons not yet translated) at that edition's
page, where MyST would otherwise offer the source file as a download.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.matching import Matcher

__all__ = ["EDITIONS", "INCLUDE", "ROOT_DOC", "TEXT", "edition_of", "counterpart", "page_url",
           "switch_context", "on_html_page_context", "EditionLinks"]

#: gettext language -> the edition's folder under the site's root ("" for English).
EDITIONS = {"en": "", "zh_CN": "zh-CN/"}
#: What each edition's pages are (Sphinx include_patterns; everything else in the repository is not).
INCLUDE = {
    "en": ["book/**", "notebooks/*.ipynb", "README.md", "instructor/GUIDE.md", "instructor/CLASSROOM.md",
           "wslab/battery/COVERAGE.md", "docs/*.md", "ARCHITECTURE.md", "CONTRIBUTING.md"],
    "zh_CN": ["book/zh-CN/**", "notebooks/zh-CN/*.ipynb", "README.zh-CN.md", "instructor/GUIDE.zh-CN.md",
              "instructor/CLASSROOM.zh-CN.md"],
}
#: The start page of each edition.
ROOT_DOC = {"en": "book/index", "zh_CN": "book/zh-CN/index"}
#: The words the book adds, in each edition.
TEXT = {
    "en": {
        "switch": "中文", "switch_title": "阅读中文版", "switch_lang": "zh-CN",
        "measured_title": "How these outputs were made",
    },
    "zh_CN": {
        "switch": "English", "switch_title": "Read this in English", "switch_lang": "en",
        "measured_title": "这些输出是怎么来的",
    },
}


def edition_of(language: str | None) -> str:
    """The edition of Sphinx's ``language`` setting: ``zh_CN``, or ``en`` for anything else."""
    return "zh_CN" if language == "zh_CN" else "en"


def _source_exists(srcdir: Path, docname: str) -> bool:
    return any((srcdir / f"{docname}{suffix}").is_file() for suffix in (".md", ".ipynb"))


def counterpart(docname: str, edition: str, srcdir: Path) -> str | None:
    """The page of the other edition that ``docname`` (of ``edition``) is a translation of, or None."""
    if edition == "en":
        if docname == ROOT_DOC["en"]:
            other = ROOT_DOC["zh_CN"]
        elif docname.startswith("notebooks/") and docname.count("/") == 1:
            other = "notebooks/zh-CN/" + docname.split("/", 1)[1]
        else:
            other = f"{docname}.zh-CN"
    elif docname == ROOT_DOC["zh_CN"]:
        other = ROOT_DOC["en"]
    elif docname.startswith("notebooks/zh-CN/"):
        other = "notebooks/" + docname.rsplit("/", 1)[1]
    elif docname.endswith(".zh-CN"):
        other = docname[: -len(".zh-CN")]
    else:
        return None
    return other if _source_exists(srcdir, other) else None


def page_url(edition: str, docname: str) -> str:
    """Where ``docname`` of ``edition`` is, from the site's root (``zh-CN/README.zh-CN.html``)."""
    return f"{EDITIONS[edition]}{docname}.html"


def switch_context(pagename: str, edition: str, srcdir: Path) -> dict[str, str]:
    """The language switch of page ``pagename``: the other edition's page (or start page), relative."""
    other_edition = "zh_CN" if edition == "en" else "en"
    other = counterpart(pagename, edition, srcdir) or ROOT_DOC[other_edition]
    here = posixpath.dirname(page_url(edition, pagename))
    text = TEXT[edition]
    return {"url": posixpath.relpath(page_url(other_edition, other), here or "."), "label": text["switch"],
            "title": text["switch_title"], "hreflang": text["switch_lang"]}


def on_html_page_context(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                         doctree: Any) -> None:
    context["wslab_switch"] = switch_context(pagename, edition_of(app.config.language), Path(app.srcdir))


class EditionLinks(SphinxPostTransform):
    """A link to a source of the other edition goes to that edition's page."""

    default_priority = 8  # before MyST's MystReferenceResolver (9), beside FolderLinks

    def run(self, **kwargs: Any) -> None:
        edition = edition_of(self.config.language)
        other_edition = "zh_CN" if edition == "en" else "en"
        theirs = Matcher(INCLUDE[other_edition])
        srcdir = Path(self.env.srcdir)
        for node in list(self.document.findall(addnodes.pending_xref)):
            # MyST makes a link to a .md or .ipynb file a "doc" reference to its docname.
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
                continue
            docname = node.get("reftarget", "").lstrip("/")
            if not docname or docname in self.env.found_docs:
                continue
            source = next((f"{docname}{suffix}" for suffix in (".md", ".ipynb")
                           if (srcdir / f"{docname}{suffix}").is_file()), None)
            if source is None or not theirs(source):
                continue
            here = posixpath.dirname(page_url(edition, node.get("refdoc", self.env.docname)))
            url = posixpath.relpath(page_url(other_edition, docname), here or ".")
            fragment = node.get("reftargetid")
            link = nodes.reference("", "", refuri=url + (f"#{fragment}" if fragment else ""), internal=True)
            link += node[0].deepcopy() if node.children else nodes.literal(docname, docname)
            node.replace_self(link)
