"""The lesson pages: a note on how their outputs were made, links to run them, live parts as pictures.

Design note
-----------
The committed notebooks are never edited. When Sphinx reads a lesson (its ``source-read``
event, on the text of ``notebooks/NN-*.ipynb`` in memory) this module splits the title off the
first cell and puts two cells under it:

* a code cell (tagged ``wslab-book-measured``) that the lesson's own kernel runs first and that
  prints, as JSON, the time, the machine (CPUs, system, Python, websockets) and the mode
  (``WSLAB_QUICK``): the run jupyter-cache keeps is the run it describes, so a cached page still
  says when its numbers were measured;
* a markdown cell inviting the reader to run it: Binder (when the repository's address is
  known), the notebook to download, and the install commands.

After execution, a docutils transform (:class:`LessonOutputs`) turns the JSON into a note, and
replaces every output that only works live (HTML with a ``<script>`` that opens a WebSocket to the
kernel) by a screenshot Chromium took during this build (:mod:`wslab_book.live`), labelled as
such: in a static page such a client can only fail to connect.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
from docutils import nodes
from sphinx.transforms import SphinxTransform

__all__ = ["MEASURED_TAG", "inject", "on_source_read", "LessonOutputs", "live_kind", "measured_text"]

MEASURED_TAG = "wslab-book-measured"
#: Where :mod:`wslab_book.live` puts the screenshots (``/book/_generated/live/`` in the sources).
GENERATED_LIVE = Path(__file__).resolve().parents[2] / "_generated" / "live"

#: Run by the lesson's kernel before the lesson: where, when and how its outputs are measured.
MEASURED_CELL = '''\
# Added by the book's build (book/_ext/wslab_book/lessons.py); not part of the lesson.
def _wslab_book_run():
    import datetime, json, os, platform
    from importlib.metadata import version
    print(json.dumps({
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "websockets": version("websockets"),
        "quick": os.environ.get("WSLAB_QUICK") == "1",
    }))
_wslab_book_run()
del _wslab_book_run'''

INSTALL_PAGE = "../book/install.md"


def run_it_cell(name: str, repository: str) -> str:
    """The markdown under a lesson's title: Binder, download, install."""
    if repository:
        binder = (f"[open it on Binder](https://mybinder.org/v2/gh/{repository}/HEAD"
                  f"?labpath={quote('notebooks/' + name, safe='')})")
    else:
        binder = ("open it on Binder (point [mybinder.org](https://mybinder.org) at the repository; "
                  "this copy of the book was built without knowing the repository's address)")
    return (
        ":::{admonition} Run it yourself\n:class: tip\n"
        "The outputs below come from one run on the machine named above; yours will differ.\n"
        f"Run the lesson for your own numbers: {binder}, "
        f"{{download}}`download the notebook <{name}>`, "
        f"or [install the kit]({INSTALL_PAGE}) with two commands and open it in JupyterLab.\n"
        ":::"
    )


def inject(text: str, name: str, repository: str) -> str:
    """The notebook ``text`` with the title split off and the two cells under it."""
    nb = nbformat.reads(text, as_version=4)
    first = nb.cells[0]
    if first.cell_type != "markdown" or not first.source.startswith("# "):
        raise ValueError(f"{name}: the first cell should start with the lesson's '# ' title")
    title, _, rest = first.source.partition("\n")
    code = nbformat.v4.new_code_cell(MEASURED_CELL, metadata={"tags": [MEASURED_TAG, "remove-input"]})
    cells = [nbformat.v4.new_markdown_cell(title), code,
             nbformat.v4.new_markdown_cell(run_it_cell(name, repository))]
    if rest.strip():
        cells.append(nbformat.v4.new_markdown_cell(rest.strip("\n")))
    nb.cells[0:1] = cells
    return nbformat.writes(nb)


def on_source_read(app: Any, docname: str, source: list[str]) -> None:
    if docname.startswith("notebooks/"):
        name = docname.split("/", 1)[1] + ".ipynb"
        source[0] = inject(source[0], name, app.config.wslab_repository)


def measured_text(data: dict[str, Any]) -> str:
    mode = ("quick mode (WSLAB_QUICK=1: smaller measurements, as the tests run the lessons)"
            if data.get("quick") else "full mode (the measurements a learner's run makes)")
    return (f"The outputs on this page were measured on {data['when']}, on a {data['system']} "
            f"machine with {data['cpus']} CPUs, Python {data['python']}, websockets "
            f"{data['websockets']}, in {mode}, by the build of this book in a fresh kernel.")


def live_kind(html: str) -> str | None:
    """Which live part an HTML output is (``push``, ``chat``, ``echo``, ``buffered``), or None."""
    if "<script" not in html or "WebSocket" not in html:
        return None
    if 'class="wslab-buffered"' in html:
        return "buffered"
    if 'class="wslab-client"' in html:
        if '"format": "chat"' in html:
            return "chat"
        title = re.search(r"<b>(.*?)</b>", html)
        return "push" if title and "kernel" in title.group(1) else "echo"
    return "live"


class LessonOutputs(SphinxTransform):
    """The measured note, and a labelled screenshot instead of each live-only output."""

    default_priority = 400

    def apply(self, **kwargs: Any) -> None:
        if not self.env.docname.startswith("notebooks/"):
            return
        for cell in list(self.document.findall(nodes.container)):
            if f"tag_{MEASURED_TAG}" in cell.get("classes", []):
                cell.replace_self(self._measured(cell))
        # An output is a mime bundle (one child per type, picked at write time) or a lone raw node.
        for raw in list(self.document.findall(nodes.raw)):
            kind = live_kind(raw.astext()) if "html" in raw.get("format", "") else None
            if kind is None:
                continue
            target = raw
            for parent in (raw.parent, getattr(raw.parent, "parent", None)):
                if isinstance(parent, nodes.Element) and parent.get("nb_element") == "mime_bundle":
                    target = parent
            if target.parent is not None:
                target.replace_self(self._live(kind))

    def _measured(self, cell: nodes.container) -> nodes.Node:
        text = "".join(n.astext() for n in cell.findall(nodes.literal_block) if "output" in n.get("classes", []))
        try:
            data = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ValueError(f"{self.env.docname}: the measured cell printed {text!r}, not JSON") from None
        note = nodes.admonition(classes=["note", "wslab-measured"])
        note += nodes.title(text="How these outputs were made")
        note += nodes.paragraph(text=measured_text(data))
        return note

    def _live(self, kind: str) -> nodes.Node:
        from . import live

        note = nodes.admonition(classes=["important", "wslab-live"])
        shot = live.SHOTS.get(kind)
        note += nodes.title(text="Live in the notebook" + ("" if shot is None else ": a screenshot here"))
        if shot is None:
            note += nodes.paragraph(text=(
                "This output is a client that talks to the kernel while the lesson runs; "
                "a static page cannot show it. Run the lesson to see it live."))
            return note
        when = live.taken_at(GENERATED_LIVE)
        note += nodes.paragraph(text=(
            f"This output is a client that talks to the kernel while the lesson runs: {shot.caption}. "
            f"In the book it is a picture, taken by Chromium on {when} while building the book, "
            "against a real wslab server; run the lesson to use it live."))
        note += nodes.image(uri=f"/book/_generated/live/{kind}.png", alt=f"screenshot: {shot.caption}",
                            classes=["wslab-screenshot"])
        return note
