"""Sphinx configuration of the wslab book (build it with ``python book/build.py``).

The source directory is the repository root, so the lessons (``notebooks/*.ipynb``), README.md
and the instructor pages are read where they are, and their relative links keep working; this
folder holds only the book's own pages and this configuration. What is generated at build time
(command pages, API pages, screenshots of the live parts) goes to ``book/_generated/`` and the
HTML to ``book/_build/html/`` (both gitignored).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
sys.path.insert(0, str(BOOK / "_ext"))
sys.path.insert(0, str(ROOT))  # autodoc and the command pages read this checkout's wslab

project = "wslab"
author = "the wslab authors"
copyright = "the wslab authors"  # noqa: A001 (Sphinx's name)
root_doc = "book/index"
language = "en"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "sphinx.ext.githubpages",  # .nojekyll: Pages would hide the _static/ and _generated/ folders
    "wslab_book",
]

# Only these are pages; everything else in the repository is not (tests, sources with solutions).
include_patterns = [
    "book/**",
    "notebooks/*.ipynb",
    "README.md",
    "instructor/GUIDE.md",
    "instructor/CLASSROOM.md",
    "wslab/battery/COVERAGE.md",
    "docs/*.md",
    "ARCHITECTURE.md",
    "CONTRIBUTING.md",
]
exclude_patterns = ["book/_build/**", "book/_ext/**", "book/_generated/install-commands.md", "**/.ipynb_checkpoints"]

# MyST: headings get anchors (README links to #listener-limits), ::: fences for the injected notes.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

# Execution: jupyter-cache, so a lesson whose code did not change is not run again. The cache is
# per mode (WSLAB_QUICK=1 is quick): its key is the code, not the environment.
QUICK = os.environ.get("WSLAB_QUICK") == "1"
nb_execution_mode = os.environ.get("WSLAB_BOOK_EXECUTE", "cache")
nb_execution_cache_path = str(BOOK / "_build" / (".jupyter_cache-quick" if QUICK else ".jupyter_cache-full"))
nb_execution_timeout = 600
nb_execution_raise_on_error = True  # a lesson that fails stops the build: no traceback on a page
nb_execution_show_tb = True  # ... and the log says why
nb_merge_streams = True
# No widget JavaScript from a CDN (the book works offline): a widget shows its text form.
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

html_theme = "sphinx_book_theme"
html_title = "wslab: learn WebSockets in Jupyter"
html_static_path = ["_static"]
html_extra_path = ["_extra"]  # index.html at the site's root: a redirect to book/index.html
html_css_files = ["wslab-book.css"]
html_last_updated_fmt = None
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "navigation_with_keys": False,
    "home_page_in_toc": True,
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
