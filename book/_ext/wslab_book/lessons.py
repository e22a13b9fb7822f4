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

Both are in the edition's language (:mod:`wslab_book.editions`): a Chinese lesson
(``notebooks/zh-CN/``) gets them in Chinese, and its kernel answers in Chinese (``WSLAB_LANG``,
set by ``book/build.py`` for that edition).

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

from .editions import TEXT, edition_of

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
#: The Chinese edition's install page, from notebooks/zh-CN/.
INSTALL_PAGE_ZH = "../../book/zh-CN/install.md"
#: The live parts' captions in Chinese (live.SHOTS has the English ones).
CAPTIONS_ZH = {
    "push": "页面里的客户端接收内核推送的消息（第 05 课）",
    "chat": "课堂聊天室，从一个成员的页面看另一个成员和教师在聊天（第 05 课）",
    "echo": "页面里的客户端与从零写的回显服务器对话（第 06 课）",
    "buffered": "页面向一个先 3 秒什么都不读、之后全部读完的服务器发送 16 MiB 时的 bufferedAmount（第 07 课）",
}


#: The note that replaces a live output, in each edition (``{caption}``, ``{when}``).
LIVE_WORDS = {
    "en": {
        "title": "Live in the notebook", "shot": ": a screenshot here",
        "none": ("This output is a client that talks to the kernel while the lesson runs; "
                 "a static page cannot show it. Run the lesson to see it live."),
        "text": ("This output is a client that talks to the kernel while the lesson runs: {caption}. "
                 "In the book it is a picture, taken by Chromium on {when} while building the book, "
                 "against a real wslab server; run the lesson to use it live."),
        "alt": "screenshot: {caption}",
    },
    "zh_CN": {
        "title": "在 notebook 里是实时的", "shot": "：这里是截图（screenshot）",
        "none": "这个输出是一个在课程运行时与内核通信的客户端；静态页面无法展示它。运行这一课，就能看到实时的效果。",
        "text": ("这个输出是一个在课程运行时与内核通信的客户端：{caption}。在书里它是一张截图（screenshot），"
                 "由 Chromium 在构建本书时（{when}）对着真实的 wslab 服务器截取；运行这一课就能实时使用它。"),
        "alt": "截图：{caption}",
    },
}


def run_it_cell(name: str, repository: str, *, folder: str = "notebooks", language: str = "en") -> str:
    """The markdown under a lesson's title: Binder, download, install (``name`` is in ``folder``)."""
    labpath = quote(f"{folder}/{name}", safe="")
    if language == "zh_CN":
        if repository:
            binder = f"[在 Binder 上打开](https://mybinder.org/v2/gh/{repository}/HEAD?labpath={labpath})"
        else:
            binder = ("在 Binder 上打开（把 [mybinder.org](https://mybinder.org) 指向本仓库；"
                      "构建这本书时不知道仓库的地址）")
        return (
            ":::{admonition} 自己运行\n:class: tip\n"
            "下面的输出来自上面那台机器上的一次运行；你的结果会不一样。\n"
            f"想得到你自己的数字，就自己运行这一课：{binder}、"
            f"{{download}}`下载 notebook <{name}>`，"
            f"或者用两条命令[安装这套工具]({INSTALL_PAGE_ZH})，再在 JupyterLab 里打开它。\n"
            ":::"
        )
    if repository:
        binder = f"[open it on Binder](https://mybinder.org/v2/gh/{repository}/HEAD?labpath={labpath})"
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


def inject(text: str, name: str, repository: str, *, folder: str = "notebooks", language: str = "en") -> str:
    """The notebook ``text`` with the title split off and the two cells under it."""
    nb = nbformat.reads(text, as_version=4)
    first = nb.cells[0]
    if first.cell_type != "markdown" or not first.source.startswith("# "):
        raise ValueError(f"{name}: the first cell should start with the lesson's '# ' title")
    title, _, rest = first.source.partition("\n")
    code = nbformat.v4.new_code_cell(MEASURED_CELL, metadata={"tags": [MEASURED_TAG, "remove-input"]})
    cells = [nbformat.v4.new_markdown_cell(title), code,
             nbformat.v4.new_markdown_cell(run_it_cell(name, repository, folder=folder, language=language))]
    if rest.strip():
        cells.append(nbformat.v4.new_markdown_cell(rest.strip("\n")))
    nb.cells[0:1] = cells
    return nbformat.writes(nb)


def on_source_read(app: Any, docname: str, source: list[str]) -> None:
    if docname.startswith("notebooks/"):
        folder, _, stem = docname.rpartition("/")
        source[0] = inject(source[0], stem + ".ipynb", app.config.wslab_repository, folder=folder,
                           language=edition_of(app.config.language))


def measured_text(data: dict[str, Any], language: str = "en") -> str:
    if language == "zh_CN":
        mode = ("快速模式（WSLAB_QUICK=1：测量规模较小，和测试套件运行课程时一样）"
                if data.get("quick") else "完整模式（学习者自己运行时的测量规模）")
        return (f"本页的输出测于 {data['when']}，在一台 {data['system']} 机器上（{data['cpus']} 个 CPU，"
                f"Python {data['python']}，websockets {data['websockets']}），{mode}，"
                f"由构建本书时在一个全新的内核里运行得到。")
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
        language = edition_of(self.config.language)
        note += nodes.title(text=TEXT[language]["measured_title"])
        note += nodes.paragraph(text=measured_text(data, language))
        return note

    def _live(self, kind: str) -> nodes.Node:
        from . import live

        note = nodes.admonition(classes=["important", "wslab-live"])
        shot = live.SHOTS.get(kind)
        language = edition_of(self.config.language)
        words = LIVE_WORDS[language]
        note += nodes.title(text=words["title"] + ("" if shot is None else words["shot"]))
        if shot is None:
            note += nodes.paragraph(text=words["none"])
            return note
        caption = CAPTIONS_ZH.get(kind, shot.caption) if language == "zh_CN" else shot.caption
        note += nodes.paragraph(text=words["text"].format(caption=caption, when=live.taken_at(GENERATED_LIVE)))
        note += nodes.image(uri=f"/book/_generated/live/{kind}.png", alt=words["alt"].format(caption=caption),
                            classes=["wslab-screenshot"])
        return note
