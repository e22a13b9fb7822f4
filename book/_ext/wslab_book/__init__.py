"""The wslab book's Sphinx extension: generated pages, lesson notes, live parts as screenshots.

``builder-inited`` writes what the book generates into ``book/_generated/`` (gitignored) before
Sphinx looks for pages: one page per ``python -m wslab`` command (:mod:`.commands`), the API pages
(:mod:`.api`), and the screenshots of the live parts (:mod:`.live`, only when they are stale).
Lesson pages get their notes at read time (:mod:`.lessons`). The book has an English and a
Chinese edition, each page with a switch to the other (:mod:`.editions`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from sphinx.util import logging

from . import api, commands, editions, lessons, links, live
from .files import write_if_changed

__all__ = ["setup", "install_commands", "INSTALL_WORDS", "GENERATED"]

GENERATED = Path(__file__).resolve().parents[2] / "_generated"
logger = logging.getLogger(__name__)


#: The words around README's two commands on the install page, in each edition.
INSTALL_WORDS = {
    "en": ("Install everything and open the first lesson:",
           "Install the test tools and run every test, every lesson included:"),
    "zh_CN": ("安装全部依赖并打开第一课：", "安装测试工具并运行所有测试（包括执行每一课）："),
}


def install_commands(readme: str, language: str = "en") -> str:
    """README's first two shell blocks (install and open the lessons; install the tests and run
    them), as markdown: the install page shows the README's own commands, never a copy."""
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, flags=re.M | re.S)
    if len(blocks) < 2:
        raise ValueError("README.md should open with two ```bash blocks (install, then test); "
                         f"found {len(blocks)}: update book/_ext/wslab_book/__init__.py")
    first, second = INSTALL_WORDS[language]
    return f"{first}\n\n```bash\n{blocks[0]}```\n\n{second}\n\n```bash\n{blocks[1]}```\n"


def _generate(app: Any) -> None:
    GENERATED.mkdir(exist_ok=True)
    readme = (Path(app.srcdir) / "README.md").read_text(encoding="utf-8")
    write_if_changed(GENERATED / "install-commands.md", install_commands(readme))
    write_if_changed(GENERATED / "install-commands.zh_CN.md", install_commands(readme, "zh_CN"))
    if editions.edition_of(app.config.language) == "en":  # the Chinese edition has no command or API pages
        commands.write_pages(GENERATED / "commands")
        api.write_pages(GENERATED / "api")
    if os.environ.get("WSLAB_BOOK_SCREENSHOTS", "1") != "0":
        live.take_all(GENERATED / "live", chromium=os.environ.get("WSLAB_CHROMIUM", live.CHROMIUM),
                      log=logger.info)


def _code_version() -> int:
    """A number that changes with this extension's code: Sphinx then re-reads every page."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return int(digest.hexdigest()[:8], 16)


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("wslab_repository", os.environ.get("GITHUB_REPOSITORY", "").strip("/"), "env")
    app.connect("builder-inited", _generate)
    app.connect("source-read", lessons.on_source_read)
    app.add_transform(lessons.LessonOutputs)
    app.add_transform(api.ImplicitDocstringSections)
    app.add_post_transform(links.FolderLinks)
    app.add_post_transform(editions.EditionLinks)
    app.connect("html-page-context", editions.on_html_page_context)
    app.connect("autodoc-skip-member", api.skip_code_not_written_here)
    return {"version": "1", "env_version": _code_version(), "parallel_read_safe": True, "parallel_write_safe": True}
