"""Terminal output shared by every command: readable tables and progress bars."""

from __future__ import annotations

import sys
from contextlib import contextmanager


def format_table(rows: list, headers: list, title: str | None = None) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(str(h)) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    numeric = [all(_is_number(row[i]) for row in rows) and rows for i in range(len(headers))]

    def line(values):
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line([str(h) for h in headers]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def print_table(rows: list, headers: list, title: str | None = None, file=None) -> None:
    """Print :func:`format_table` to stdout (or ``file``)."""
    print(format_table(rows, headers, title), file=file or sys.stdout)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


@contextmanager
def progress(total: int, description: str, enabled: bool = True, unit: str = "step"):
    """A tqdm bar on stderr, or a no-op object when disabled (small inputs, ``--json``)."""
    from tqdm import tqdm

    # A bar redrawn into a log file is noise: draw only on a terminal.
    shown = enabled and sys.stderr.isatty()
    bar = tqdm(total=total, desc=description, unit=unit, disable=not shown, file=sys.stderr, leave=False)
    try:
        yield bar
    finally:
        bar.close()
