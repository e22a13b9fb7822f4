"""Sphinx configuration of the wslab book (build it with ``python book/build.py``).

The source directory is the repository root, so the lessons (``notebooks/*.ipynb``), README.md
and the instructor pages are read where they are, and their relative links keep working; this
folder holds only the book's own pages and this configuration. What is generated at build time
(command pages, API pages, screenshots of the live parts) goes to ``book/_generated/`` and the
HTML to ``book/_build/html/`` (both gitignored).

The Chinese edition is the same configuration with the Sphinx tag ``zh_CN`` (``-t zh_CN``, as
``book/build.py`` runs it): language zh_CN (Sphinx's own words in Chinese), the Chinese lessons
(``notebooks/zh-CN/``) and pages (``README.zh-CN.md``, ``instructor/*.zh-CN.md``, ``book/zh-CN/``),
its own jupyter-cache, into ``book/_build/html/zh-CN/``. Every page of both links the same page
in the other (``book/_ext/wslab_book/editions.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
sys.path.insert(0, str(BOOK / "_ext"))
sys.path.insert(0, str(ROOT))  # autodoc and the command pages read this checkout's wslab

from wslab_book.editions import INCLUDE, ROOT_DOC  # noqa: E402 (the path above)

# `tags` is the set of -t tags Sphinx passes to this file: -t zh_CN builds the Chinese edition.
EDITION = "zh_CN" if tags.has("zh_CN") else "en"  # noqa: F821 (defined by Sphinx)

project = "wslab"
author = "the wslab authors"
copyright = "the wslab authors"  # noqa: A001 (Sphinx's name)
root_doc = ROOT_DOC[EDITION]
language = EDITION

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "sphinx.ext.githubpages",  # .nojekyll: Pages would hide the _static/ and _generated/ folders
    "wslab_book",
]

# Only these are pages; everything else in the repository is not (tests, sources with solutions).
# The English edition: book/, notebooks/*.ipynb, README.md, the instructor pages, the references;
# the Chinese edition: their translations (wslab_book/editions.py lists both).
include_patterns = INCLUDE[EDITION]
exclude_patterns = ["book/_build/**", "book/_ext/**", "book/_generated/install-commands*.md", "**/.ipynb_checkpoints"]
if EDITION == "en":
    exclude_patterns.append("book/zh-CN/**")

# MyST: headings get anchors (README links to #listener-limits), ::: fences for the injected notes.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

# Execution: jupyter-cache, so a lesson whose code did not change is not run again. The cache is
# per edition and mode (WSLAB_QUICK=1 is quick): its key is the code, not the environment, and a
# Chinese lesson has the English code cells (its kernel answers in Chinese: WSLAB_LANG, build.py).
QUICK = os.environ.get("WSLAB_QUICK") == "1"
nb_execution_mode = os.environ.get("WSLAB_BOOK_EXECUTE", "cache")
nb_execution_cache_path = str(BOOK / "_build" / ((".jupyter_cache-" if EDITION == "en" else ".jupyter_cache-zh_CN-")
                                                  + ("quick" if QUICK else "full")))
nb_execution_timeout = 600
nb_execution_raise_on_error = True  # a lesson that fails stops the build: no traceback on a page
nb_execution_show_tb = True  # ... and the log says why
nb_merge_streams = True
# No widget JavaScript from a CDN (the book works offline): a widget shows its text form.
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

html_theme = "sphinx_book_theme"
html_title = "wslab: learn WebSockets in Jupyter" if EDITION == "en" else "wslab：在 Jupyter 里学 WebSocket"
templates_path = ["_templates"]
html_static_path = ["_static"]
# index.html at the edition's root (the site's, or zh-CN/): a redirect to its start page.
html_extra_path = ["_extra"] if EDITION == "en" else ["_extra_zh"]
html_css_files = ["wslab-book.css"]
html_js_files = [] if EDITION == "en" else ["wslab-zh-search.js"]  # Sphinx 9.0's Chinese search: see the file
html_last_updated_fmt = None
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "navigation_with_keys": False,
    "home_page_in_toc": True,
    # The language switch first, then the theme's own buttons (fullscreen, mode, search, contents).
    "article_header_end": ["wslab-language-switch.html", "article-header-buttons.html"],
}
# Without it the theme's script logs "Got invalid theme mode: ." as a console error.
html_context = {"default_mode": "light"}
# The repository's GitHub address (GITHUB_REPOSITORY=owner/name, which GitHub Actions sets):
# Binder links and the repository button need it; without it the pages say how to get there.
REPOSITORY = os.environ.get("GITHUB_REPOSITORY", "").strip("/")
if REPOSITORY:
    html_theme_options["repository_url"] = f"https://github.com/{REPOSITORY}"
    html_theme_options["use_repository_button"] = True

# API reference: the docstrings are the source; names are documented where __all__ lists them.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# No "members" here: Sphinx 9 would let it override each page's explicit :members: list.
autodoc_default_options = {"show-inheritance": True}
autosummary_generate = False
# Each object is documented in the module that defines it (book/_ext/wslab_book/api.py), so
# viewcode needs no guessing; following imports sent its links back to the wrong page.
viewcode_follow_imported_members = False  # book/_ext/wslab_book writes the module pages itself
suppress_warnings = ["myst.header"]
