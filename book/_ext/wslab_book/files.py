"""Writing generated pages so that Sphinx re-reads only what changed (it goes by file times)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_if_changed", "sync_pages"]


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` unless it already holds exactly that."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def sync_pages(outdir: Path, pages: dict[str, str]) -> None:
    """Make ``outdir``'s ``*.md`` files exactly ``pages`` (file name -> text)."""
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in outdir.glob("*.md"):
        if stale.name not in pages:
            stale.unlink()
    for file_name, text in pages.items():
        write_if_changed(outdir / file_name, text)
