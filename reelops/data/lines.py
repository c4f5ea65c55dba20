"""Line-level checks of raw delimited files, vectorised with numpy.

Every raw file is first cut into lines (with their 1-based line numbers) and each line is
checked for bytes that do not decode in the layout's encoding and for the number of
fields. Lines that fail are quarantined with their file, line and reason; the rest are
handed to pandas as one clean buffer together with the line number of each row, so later
checks can still name the line of every bad row.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

# Bytes that never appear in text: C0 controls (but tab, LF, CR), DEL and the C1 range.
# latin-1 maps every byte to a character, so "does not decode" for a latin-1 layout means
# these: binary garbage or a file in another encoding.
_LATIN1_UNDECODABLE = np.zeros(256, dtype=bool)
_LATIN1_UNDECODABLE[[*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]] = True


class QuarantineFull(Exception):
    """More rows are bad than the caller can accept: reading stops early (hostile input)."""


def scratch_for(quarantine: "Quarantine") -> "Quarantine":
    """A quarantine for a fast first pass whose rows may be thrown away.

    It holds few rows: a first pass that finds many bad lines stops, and the caller runs
    the full check into ``quarantine`` itself, whose bound on bad rows is then exact.
    """
    return Quarantine(limit=quarantine.always_held if quarantine.limit is not None else None)


@dataclass
class Quarantine:
    """Bad rows of one ingest: where each came from and why it was set aside.

    Attributes:
        rows: every quarantined row (file, line, reason, raw text cut to 500 characters).
        limit: the most rows to accept; the one past it is kept and raises :class:`QuarantineFull`. A caller
            that will refuse the input above some count of bad rows sets it, so a file of
            millions of bad lines is refused without building millions of rows.
        unterminated: file -> its last line's number, for files without a final newline
            (a truncated file looks like that; validation says so when that line is bad).
    """

    rows: list = field(default_factory=list)
    limit: int | None = None
    unterminated: dict = field(default_factory=dict)
    max_share: float | None = None
    line_bound: int = 0
    always_held: int = 10_000
    _sizes: dict = field(default_factory=dict, repr=False)
    _pending: tuple | None = field(default=None, repr=False)

    @classmethod
    def bounded(cls, max_share: float, sizes: dict, always_held: int = 10_000) -> "Quarantine":
        """A quarantine that stops once the bad rows alone exceed ``max_share`` of every line.

        ``sizes`` (file -> bytes) bounds the line count; once more than ``always_held``
        rows are bad, the exact line count of the file being read (:meth:`reading`)
        replaces its size. So a file of millions of bad lines is refused without building millions of
        rows, and a clean file is never counted twice. Up to ``always_held`` rows are always
        held, so a small input's message gives the exact count.
        """
        quarantine = cls(max_share=max_share, always_held=always_held)
        quarantine.line_bound = int(sum(sizes.values()))
        quarantine._sizes = dict(sizes)
        quarantine._update_limit()
        return quarantine

    @contextlib.contextmanager
    def reading(self, file: str, data: bytes):
        """While ``file`` (``data``: its bytes) is read, its exact line count can replace its
        size in the bound; it is counted only if many rows turn out bad, so a clean file
        never pays for counting its lines."""
        self._pending = (file, data) if self.max_share is not None else None
        try:
            yield
        finally:
            self._pending = None

    def _count_pending(self) -> None:
        if self._pending is not None:
            file, data = self._pending
            self._pending = None
            self.line_bound += data.count(b"\n") + 1 - self._sizes.pop(file, 0)
            self._update_limit()

    def _update_limit(self) -> None:
        self.limit = max(int(math.floor(self.max_share * self.line_bound)), self.always_held)

    def add(self, file: str, line: int, reason: str, raw: str) -> None:
        self.rows.append({"file": file, "line": int(line), "reason": reason, "raw": raw})
        if self.limit is None:
            return
        if len(self.rows) > self.always_held:
            self._count_pending()  # the limit from sizes alone is loose: make it exact now
        if len(self.rows) > self.limit:
            raise QuarantineFull(f"more than {self.limit:,} bad rows")

    def extend(self, other: "Quarantine") -> None:
        for row in other.rows:
            self.add(row["file"], row["line"], row["reason"], row["raw"])

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
    """The lines of a file that passed the line-level checks.

    Attributes:
        data: the good lines joined by ``\\n``.
        line_numbers: the 1-based line number in the file of each good line.
        read: lines read (not counting a header or blank lines).
        blank: blank lines skipped.
        unterminated_line: the number of the last line when the file does not end with a
            newline (a file cut off in the middle ends that way), else None.
    """

    data: bytes
    line_numbers: np.ndarray
    read: int
    blank: int
    unterminated_line: int | None = None


# Lines are checked a chunk at a time, so the per-line index (offsets, masks, line
# numbers: about 40 bytes a line) never exists for a whole file: a file of 200 MB of
# blank lines once needed 8.7 GB for it.
CHUNK_BYTES = 2 << 20
_RAW_CHARS = 500


def _raw_text(data, start: int, end: int) -> str:
    # Cut before decoding: a 100 MB line must not become a 400 MB escaped string first.
    piece = bytes(data[start:min(end, start + _RAW_CHARS)])
    return piece.decode("latin-1").encode("unicode_escape").decode("ascii")[:_RAW_CHARS]


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

    Raises:
        QuarantineFull: more lines are bad than ``quarantine.limit`` allows.
    """
    if trust_total and n_fields is not None:
        # The fast path: no per-line field count when the separators add up. Its rows go
        # to a scratch quarantine first, as the full check below would find them again.
        scratch = scratch_for(quarantine)
        try:
            clean = _split(data, file, encoding, separator, None, scratch, has_header)
        except QuarantineFull:  # many bad lines: the full check below, into the real quarantine
            clean = None
        if clean is not None and _total_fits(data, separator, n_fields, has_header, clean.read):
            quarantine.extend(scratch)
            return clean
    return _split(data, file, encoding, separator, n_fields, quarantine, has_header)


def _split(data: bytes, file: str, encoding: str, separator: bytes, n_fields, quarantine: Quarantine,
           has_header: bool) -> CleanLines:
    view = memoryview(data)
    arr = np.frombuffer(data, dtype=np.uint8)
    pieces, numbers = [], []
    untouched = True  # every line kept as it is: the clean data is ``data`` itself
    read = blank_total = lines_before = 0
    position = 0
    while position < len(data):
        stop = _chunk_end(data, position)
        chunk = arr[position:stop]
        if data.count(b"\n", position, stop - 1) == 0:
            # One line (a long one, as chunks cut long lines out on their own): no
            # chunk-sized masks; its checks count bytes in place.
            newlines = np.array([len(chunk) - 1] if data[stop - 1] == 10 else [], dtype=np.int64)
        else:
            newlines = np.flatnonzero(chunk == 10)
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(chunk)]))
        if ends[-1] == starts[-1]:
            # The empty piece after a chunk's last newline is not a line.
            starts, ends = starts[:-1], ends[:-1]
        # Windows line endings: the CR belongs to no field.
        has_cr = (ends > starts) & (chunk[np.maximum(ends - 1, 0)] == 13)
        ends = ends - has_cr
        keep = np.ones(len(starts), dtype=bool)
        if has_header and position == 0 and len(starts):
            keep[0] = False
        blank = (ends == starts) & keep
        keep &= ~blank
        read += int(keep.sum())
        blank_total += int(blank.sum())
        undecodable = _undecodable(chunk, starts, ends, encoding) & keep
        wrong_count = np.zeros(len(starts), dtype=bool)
        if n_fields is not None and len(starts):
            if len(starts) == 1:
                counts = np.array([data.count(separator, position, position + int(ends[0]))]) + 1
            else:
                counts = _separator_counts(chunk, separator, starts, ends) + 1
            wrong_count = keep & ~undecodable & (counts != n_fields)
        for index in np.flatnonzero(undecodable | wrong_count).tolist():
            start, end = position + int(starts[index]), position + int(ends[index])
            if undecodable[index]:
                reason = _undecodable_reason(data, arr, start, end, encoding)
            else:
                reason = f"wrong field count: expected {n_fields} fields, found {counts[index]}"
            quarantine.add(file, lines_before + index + 1, reason, _raw_text(view, start, end))
        keep &= ~(undecodable | wrong_count)
        if not (keep.all() and not has_cr.any() and not (has_header and position == 0)):
            untouched = False
        kept = np.flatnonzero(keep)
        # int32 while collecting (a file of 26 M short lines kept 210 MB of int64 here).
        numbers.append((lines_before + 1 + kept).astype(np.int32 if lines_before + len(starts) < 2**31 else np.int64))
        if len(kept) == len(starts) and not has_cr.any():
            pieces.append(view[position:position + int(ends[-1])] if len(kept) else view[0:0])
        elif len(kept):
            pieces.append(b"\n".join(view[position + s:position + e]
                                      for s, e in zip(starts[kept].tolist(), ends[kept].tolist())))
        lines_before += len(starts)
        position = stop
    line_numbers = np.concatenate(numbers) if numbers else np.zeros(0, dtype=np.int64)
    clean = data if untouched else b"\n".join(piece for piece in pieces if len(piece))
    unterminated = lines_before if data and not data.endswith(b"\n") else None
    return CleanLines(data=clean, line_numbers=line_numbers.astype(np.int64), read=read, blank=blank_total,
                      unterminated_line=unterminated)


def _chunk_end(data: bytes, position: int) -> int:
    """Where the chunk starting at ``position`` ends: just after a newline about CHUNK_BYTES on.

    A line much longer than a chunk gets a chunk of its own, so the vectorised checks of
    ordinary chunks never hold a 100 MB line and the checks of a long line run in place.
    """
    mark = min(position + CHUNK_BYTES, len(data))
    cut = data.find(b"\n", mark - 1)
    end = len(data) if cut < 0 else cut + 1
    if end - position > 2 * CHUNK_BYTES:
        before = data.rfind(b"\n", position, mark)
        if before >= 0:
            return before + 1
    return end


def _total_fits(data: bytes, separator: bytes, n_fields: int, has_header: bool, kept_lines: int) -> bool:
    """The whole file holds exactly (n_fields - 1) separators per line read."""
    header_separators = data[: data.find(b"\n")].count(separator) if has_header else 0
    return data.count(separator) - header_separators == (n_fields - 1) * kept_lines


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


_BLOCK = 1 << 20


def _latin1_suspicious(chunk: np.ndarray) -> np.ndarray:
    """Bytes that are not text in latin-1 (see ``_LATIN1_UNDECODABLE``).

    Computed a block at a time: a chunk is one line when a line is longer than a chunk
    (100 MB of NUL bytes with no newline), and whole-chunk temporaries would be five times
    its size.
    """
    suspicious = np.empty(len(chunk), dtype=bool)
    for offset in range(0, len(chunk), _BLOCK):
        part = chunk[offset:offset + _BLOCK]
        block = (part < 0x20) & (part != 9) & (part != 10) & (part != 13)
        if part.max() >= 0x7F:
            block |= _LATIN1_UNDECODABLE[part]
        suspicious[offset:offset + _BLOCK] = block
    return suspicious


def _first_latin1_suspicious(arr: np.ndarray, start: int, end: int) -> int:
    """The offset of the first byte in ``arr[start:end]`` that is not text (a block at a time), or -1."""
    for offset in range(start, end, _BLOCK):
        block = _latin1_suspicious(arr[offset:min(offset + _BLOCK, end)])
        if block.any():
            return offset + int(np.argmax(block))
    return -1


def _undecodable(chunk: np.ndarray, starts: np.ndarray, ends: np.ndarray, encoding: str) -> np.ndarray:
    """Per line of a chunk: does it hold bytes that do not decode? (one flag a line, not a row a byte)"""
    flags = np.zeros(len(starts), dtype=bool)
    if not len(starts):
        return flags
    if encoding == "latin-1":
        if len(starts) == 1:
            flags[0] = ends[0] > starts[0] and _first_latin1_suspicious(chunk, int(starts[0]), int(ends[0])) >= 0
            return flags
        suspicious = _latin1_suspicious(chunk)
        if not suspicious.any():
            return flags
        # logical_or, not add: reduceat with an integer dtype first copies the input at that width.
        flags = np.logical_or.reduceat(suspicious, np.minimum(starts, len(chunk) - 1))
        flags[ends == starts] = False
        return flags
    try:
        chunk.tobytes().decode(encoding)
        return flags
    except UnicodeDecodeError:
        pass
    # Only lines with non-ASCII bytes can fail; check those one by one.
    candidates = np.unique(np.searchsorted(starts, np.flatnonzero(chunk >= 0x80), side="right") - 1)
    for index in candidates.tolist():
        try:
            chunk[starts[index]:ends[index]].tobytes().decode(encoding)
        except UnicodeDecodeError:
            flags[index] = True
    return flags


def _undecodable_reason(data: bytes, arr: np.ndarray, start: int, end: int, encoding: str) -> str:
    """Why one line does not decode: its first bad byte."""
    if encoding == "latin-1":
        offset = max(_first_latin1_suspicious(arr, start, end), start)
        return f"undecodable bytes: byte 0x{data[offset]:02x} at column {offset - start + 1} is not text in latin-1"
    try:
        data[start:end].decode(encoding)
    except UnicodeDecodeError as error:
        return f"undecodable bytes: {error.reason} at column {error.start + 1} in {encoding}"
    return f"undecodable bytes in {encoding}"
