"""A table of rows that reads well everywhere: :class:`Rows`.

``SweepResult.table()`` returns one dict per image. :class:`Rows` is that list (indexing, ``len``,
equality and JSON stay those of a list) that shows itself as an HTML table in a notebook and as
aligned text in a terminal, instead of a raw list of dicts.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = ["Rows"]

#: Columns a shown table leaves out (still in each dict): positions and long or per-job detail.
HIDDEN = ("x", "y", "z", "prompt", "progress", "elapsed_s", "error")
#: A shown cell is cut to this many characters (the text table only).
CELL_CHARS = 48


def _text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


class Rows(list[dict[str, Any]]):
    """A list of row dicts, shown as a table (HTML in a notebook, aligned text in a terminal)."""

    def columns(self) -> list[str]:
        """The shown columns: every key of the rows, in first-seen order, but :data:`HIDDEN`."""
        seen: dict[str, None] = {}
        for row in self:
            seen.update(dict.fromkeys(k for k in row if k not in HIDDEN))
        return list(seen)

    def text(self) -> str:
        """The rows as aligned plain text, one line per row under a header line."""
        cols = self.columns()
        cells = [[_text(row.get(c))[:CELL_CHARS] for c in cols] for row in self]
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text() if self else "(no rows)"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        cols = self.columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_text(row.get(c)))}</td>" for c in cols) + "</tr>" for row in self
        )
        return (
            '<table class="gemimg-table" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
