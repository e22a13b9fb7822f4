"""Links from the included pages to a folder of the repository (README's ``notebooks/article/``).

MyST resolves a link to a page or a file; a folder is neither, and it would become a dead
``#notebooks/article/`` anchor. This post-transform, run just before MyST's resolver, points such
a link at the folder on GitHub when the repository's address is known (``GITHUB_REPOSITORY``),
and otherwise leaves its text without a link.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform

__all__ = ["FolderLinks"]


class FolderLinks(SphinxPostTransform):
    default_priority = 8  # MyST's MystReferenceResolver runs at 9

    def run(self, **kwargs: Any) -> None:
        srcdir = Path(self.env.srcdir)
        repository = self.config.wslab_repository
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") == "doc":
                continue
            target = node.get("reftarget", "")
            if not target or "://" in target or target.startswith("#"):
                continue
            folder = posixpath.normpath(posixpath.join(posixpath.dirname(node.get("refdoc", self.env.docname)), target))
            if folder.startswith("..") or not (srcdir / folder).is_dir():
                continue
            content = node[0].deepcopy() if node.children else nodes.literal(target, target)
            if repository:
                link = nodes.reference("", "", refuri=f"https://github.com/{repository}/tree/HEAD/{folder}")
                link += content
                node.replace_self(link)
            else:
                node.replace_self(content)
