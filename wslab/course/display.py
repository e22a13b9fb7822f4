"""Small values that show as HTML in Jupyter and as plain text elsewhere."""

from __future__ import annotations

import html
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Table", "text_width"]


def text_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a Chinese character (East Asian wide) takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


@dataclass
class Table:
    """Rows under a header: an HTML table in Jupyter, aligned text in a terminal."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""
    empty: str = "(nothing)"
    align_right: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        if not self.rows:
            return self.empty
        cells = [[str(c) for c in self.columns]] + [[str(c) for c in r] for r in self.rows]
        widths = [max(text_width(row[i]) for row in cells) for i in range(len(self.columns))]

        def fmt(row: list[str]) -> str:
            pads = [" " * (w - text_width(c)) for c, w in zip(row, widths)]
            return "  ".join(
                pad + c if i in self.align_right else c + pad
                for i, (c, pad) in enumerate(zip(row, pads))
            ).rstrip()

        lines = [self.title] if self.title else []
        lines += [fmt(cells[0]), fmt(["-" * w for w in widths])]
        lines += [fmt(r) for r in cells[1:]]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p><em>{html.escape(self.empty)}</em></p>"
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
