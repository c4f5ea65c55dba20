"""Line-level checks of raw delimited files, vectorised with numpy.

Every raw file is first cut into lines (with their 1-based line numbers) and each line is
checked for bytes that do not decode in the layout's encoding and for the number of
fields. Lines that fail are quarantined with their file, line and reason; the rest are
handed to pandas as one clean buffer together with the line number of each row, so later
checks can still name the line of every bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Bytes that never appear in text: C0 controls (but tab, LF, CR), DEL and the C1 range.
# latin-1 maps every byte to a character, so "does not decode" for a latin-1 layout means
# these: binary garbage or a file in another encoding.
_LATIN1_UNDECODABLE = np.zeros(256, dtype=bool)
_LATIN1_UNDECODABLE[[*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]] = True


@dataclass
class Quarantine:
    """Bad rows of one ingest: where each came from and why it was set aside."""

    rows: list = field(default_factory=list)

    def add(self, file: str, line: int, reason: str, raw: str) -> None:
        self.rows.append({"file": file, "line": int(line), "reason": reason, "raw": raw})

    def count(self, file: str | None = None) -> int:
        if file is None:
            return len(self.rows)
        return sum(1 for row in self.rows if row["file"] == file)

    def reasons(self) -> dict:
        """Count of quarantined rows per reason class (the text before the first colon)."""
        counts: dict = {}
        for row in self.rows:
            key = row["reason"].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))


@dataclass
class CleanLines:
    """The lines of a file that passed the line-level checks."""

    data: bytes
    line_numbers: np.ndarray
    read: int
    blank: int


def _raw_text(data: bytes, start: int, end: int) -> str:
    return data[start:end].decode("latin-1").encode("unicode_escape").decode("ascii")[:500]


def split_lines(
    data: bytes,
    *,
    file: str,
    encoding: str,
    separator: bytes,
    n_fields: int | None,
    quarantine: Quarantine,
    has_header: bool = False,
    trust_total: bool = False,
) -> CleanLines:
    """Cut ``data`` into lines, quarantine the undecodable and mis-shaped ones.

    Args:
        data: the raw bytes of the file.
        file: the file's name, for error reports.
        encoding: ``latin-1`` or ``utf-8``.
        separator: field separator; ``b"::"`` is counted as one separator.
        n_fields: the number of fields a line must have, or None to skip that check
            (quoted CSV, whose separators cannot be counted byte-wise).
        quarantine: where bad lines go.
        has_header: the first line is a header and not data.
        trust_total: skip the per-line field count when the file's total number of
            separators is exactly what well-formed lines would hold. Only for callers
            whose parser rejects a short or long line itself (the typed pandas parse);
            they call again with ``trust_total=False`` when it does.

    Returns:
        The good lines joined by ``\\n`` and their 1-based line numbers in the file.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(arr)]))
    if len(arr) == 0 or ends[-1] == starts[-1]:
        # Trailing newline: the empty piece after it is not a line.
        starts, ends = starts[:-1], ends[:-1]
    # Windows line endings: the CR belongs to no field.
    has_cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    ends = ends - has_cr
    line_numbers = np.arange(1, len(starts) + 1)
    keep = np.ones(len(starts), dtype=bool)
    if has_header and len(starts):
        keep[0] = False
    blank = (ends == starts) & keep
    keep &= ~blank

    bad_reason: dict = {}
    for line_index, reason in _undecodable_lines(data, arr, starts, ends, encoding):
        if keep[line_index]:
            bad_reason[line_index] = reason

    if n_fields is not None and len(starts) and not (trust_total and _total_fits(data, separator, n_fields, keep)):
        counts = _separator_counts(arr, separator, starts, ends) + 1
        for line_index in np.flatnonzero(keep & (counts != n_fields)):
            bad_reason.setdefault(
                int(line_index), f"wrong field count: expected {n_fields} fields, found {counts[line_index]}"
            )

    for line_index in sorted(bad_reason):
        keep[line_index] = False
        quarantine.add(file, line_numbers[line_index], bad_reason[line_index], _raw_text(data, starts[line_index], ends[line_index]))

    kept_starts, kept_ends = starts[keep], ends[keep]
    if keep.all() and not has_cr.any():
        clean = data
    else:
        clean = b"\n".join(data[s:e] for s, e in zip(kept_starts.tolist(), kept_ends.tolist()))
    read = int(len(starts) - (1 if has_header and len(starts) else 0) - blank.sum())
    return CleanLines(data=clean, line_numbers=line_numbers[keep], read=read, blank=int(blank.sum()))


def _total_fits(data: bytes, separator: bytes, n_fields: int, keep: np.ndarray) -> bool:
    """The whole file holds exactly (n_fields - 1) separators per kept line."""
    header_separators = data[: data.find(b"\n")].count(separator) if not keep[0] else 0
    return data.count(separator) - header_separators == (n_fields - 1) * int(keep.sum())


def _separator_counts(arr: np.ndarray, separator: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    if len(separator) == 1:
        # Separators per line as a segment sum over the line starts (empty lines hold none).
        if not len(starts):
            return np.zeros(0, dtype=np.int64)
        is_separator = (arr == separator[0]).view(np.uint8)
        counts = np.add.reduceat(is_separator, np.minimum(starts, len(arr) - 1), dtype=np.int64)
        # reduceat sums up to the next start, i.e. through the newline; a CR is never a separator.
        counts[ends == starts] = 0
        return counts
    else:
        first = separator[0]
        hits = (arr[:-1] == first) & (arr[1:] == separator[1])
        positions = np.flatnonzero(hits)
        # "a:::b" holds one separator, not two overlapping ones.
        if len(positions) > 1:
            overlapping = np.concatenate(([False], np.diff(positions) == 1))
            positions = positions[~overlapping]
    return np.searchsorted(positions, ends, side="left") - np.searchsorted(positions, starts, side="left")


def _undecodable_lines(data: bytes, arr: np.ndarray, starts: np.ndarray, ends: np.ndarray, encoding: str):
    """Yield (line index, reason) for every line whose bytes do not decode."""
    if encoding == "latin-1":
        # Cheap comparisons first: clean text never reaches the table lookup.
        suspicious = (arr < 0x20) & (arr != 9) & (arr != 10) & (arr != 13)
        if arr.size and arr.max() >= 0x7F:
            suspicious |= _LATIN1_UNDECODABLE[arr]
        offsets = np.flatnonzero(suspicious)
        if not len(offsets):
            return
        line_indexes = np.searchsorted(starts, offsets, side="right") - 1
        for offset, line_index in zip(offsets.tolist(), line_indexes.tolist()):
            yield line_index, f"undecodable bytes: byte 0x{data[offset]:02x} at column {offset - starts[line_index] + 1} is not text in latin-1"
        return
    try:
        data.decode(encoding)
        return
    except UnicodeDecodeError:
        pass
    # Only lines with non-ASCII bytes can fail; check those one by one.
    candidates = np.unique(np.searchsorted(starts, np.flatnonzero(arr >= 0x80), side="right") - 1)
    for line_index in candidates.tolist():
        try:
            data[starts[line_index] : ends[line_index]].decode(encoding)
        except UnicodeDecodeError as error:
            yield line_index, f"undecodable bytes: {error.reason} at column {error.start + 1} in {encoding}"
