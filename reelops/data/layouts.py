"""Readers for the GroupLens MovieLens layouts, into raw frames with line numbers.

Each reader returns three frames (ratings, users, movies) with a ``_line`` column holding
the row's line in its file, plus the canonical columns of ARCHITECTURE.md. Rows that are
malformed (bad bytes, wrong field count, a value that is not a number) are quarantined
here; checks of meaning happen in :mod:`reelops.data.validation`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reelops.data.lines import Quarantine, QuarantineFull, scratch_for, split_lines

# The ml-100k genre order (u.genre); ml-1m and ml-latest name the same genres.
GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
]

# ml-1m codes occupations 0..20; the names are the ones of its README.
ML1M_OCCUPATIONS = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]

_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Layout:
    """What distinguishes one GroupLens layout from another."""

    name: str
    ratings_file: str
    users_file: str | None
    movies_file: str
    encoding: str
    rating_values: tuple

    @property
    def files(self) -> list:
        return [name for name in (self.ratings_file, self.users_file, self.movies_file) if name]


WHOLE_STARS = (1.0, 2.0, 3.0, 4.0, 5.0)
HALF_STARS = tuple(np.arange(0.5, 5.01, 0.5).tolist())

LAYOUTS = {
    "ml-100k": Layout("ml-100k", "u.data", "u.user", "u.item", "latin-1", WHOLE_STARS),
    "ml-1m": Layout("ml-1m", "ratings.dat", "users.dat", "movies.dat", "latin-1", WHOLE_STARS),
    "ml-latest": Layout("ml-latest", "ratings.csv", None, "movies.csv", "utf-8", HALF_STARS),
}


def detect_layout(folder: Path) -> Layout:
    """The layout of a folder, from the ratings file it holds.

    Raises:
        FileNotFoundError: no known ratings file is in the folder.
    """
    for layout in LAYOUTS.values():
        if (folder / layout.ratings_file).is_file():
            missing = [name for name in layout.files if not (folder / name).is_file()]
            if missing:
                raise FileNotFoundError(f"{folder}: {layout.name} layout is missing {', '.join(missing)}")
            return layout
    raise FileNotFoundError(
        f"{folder}: no MovieLens layout found (expected u.data, ratings.dat or ratings.csv)"
    )


@dataclass
class RawTables:
    """What a reader produced: frames with ``_line`` plus read counts per file."""

    layout: Layout
    ratings: pd.DataFrame
    users: pd.DataFrame
    movies: pd.DataFrame
    read: dict
    blank_lines: int


def read_layout(folder: Path, quarantine: Quarantine) -> RawTables:
    """Read a MovieLens folder of any known layout."""
    layout = detect_layout(folder)
    reader = {"ml-100k": _read_ml100k, "ml-1m": _read_ml1m, "ml-latest": _read_mllatest}[layout.name]
    return reader(folder, layout, quarantine)


def _read_table(
    folder: Path, file: str, layout: Layout, separator: bytes, columns: list, numeric: dict,
    quarantine: Quarantine, has_header: bool = False, transform=None,
) -> tuple:
    """Read one delimited file into a frame with ``_line``; bad lines are quarantined.

    The common case (a clean file) takes a fast path: the per-line field count is
    skipped when the separator total fits, and pandas parses with the final dtypes,
    rejecting any short, long or non-numeric line itself. Only when it does is the file
    checked line by line, so a clean million-row file pays little for validation.

    Returns:
        ``(frame, lines read, blank lines)``.
    """
    data = (folder / file).read_bytes()
    with quarantine.reading(file, data):
        return _read_lines(data, file, layout, separator, columns, numeric, quarantine, has_header, transform)


def _read_lines(data: bytes, file: str, layout: Layout, separator: bytes, columns: list, numeric: dict,
                quarantine: Quarantine, has_header: bool, transform) -> tuple:
    options = dict(file=file, encoding=layout.encoding, separator=separator, n_fields=len(columns), has_header=has_header)
    scratch = scratch_for(quarantine)
    try:
        clean = split_lines(data, quarantine=scratch, trust_total=True, **options)
    except QuarantineFull:  # many bad lines: straight to the slow path, into the real quarantine
        clean = None
    if clean is not None:
        _note_unterminated(quarantine, file, clean)
        text = transform(clean.data) if transform else clean.data
        frame = _parse_typed(text, clean.line_numbers, separator, columns, numeric, layout.encoding)
        if frame is not None:
            quarantine.extend(scratch)  # undecodable lines found on the fast path
            return frame, clean.read, clean.blank
        del text, clean  # the slow path below makes its own copies; do not hold two
    clean = split_lines(data, quarantine=quarantine, **options)
    _note_unterminated(quarantine, file, clean)
    text = transform(clean.data) if transform else clean.data
    frame = _parse_checked(text, clean.line_numbers, file, separator, columns, numeric, layout.encoding, quarantine)
    return frame, clean.read, clean.blank


def _csv_options(separator: bytes, columns: list, encoding: str) -> dict:
    return dict(
        sep="\t" if separator == b"::" else separator.decode(), header=None, names=columns, index_col=False,
        quoting=csv.QUOTE_NONE, encoding=encoding, na_filter=False, engine="c",
    )


def _empty_frame(columns: list, numeric: dict) -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=numeric.get(name, object)) for name in columns})
    frame["_line"] = np.array([], dtype=np.int64)
    return frame


def _parse_typed(data: bytes, line_numbers, separator, columns, numeric, encoding):
    """Parse with final dtypes (pyarrow's multi-threaded reader); None when any line is
    short, long, empty in a numeric field, or not a number."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    if not data:
        return _empty_frame(columns, numeric)
    has_text = any(column not in numeric for column in columns)
    arrow_types = {"int64": pa.int64(), "float64": pa.float64()}
    types = {c: arrow_types[numeric[c]] if c in numeric else pa.string() for c in columns}
    try:
        table = arrow_csv.read_csv(
            io.BytesIO(data),
            read_options=arrow_csv.ReadOptions(
                column_names=columns,
                # Transcoding costs time; numbers-only files are ASCII whatever the layout says.
                encoding="latin1" if has_text and encoding == "latin-1" else "utf8",
            ),
            parse_options=arrow_csv.ParseOptions(
                delimiter="\t" if separator == b"::" else separator.decode(), quote_char=False, ignore_empty_lines=False,
            ),
            convert_options=arrow_csv.ConvertOptions(column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    if table.num_rows != len(line_numbers) or any(table.column(c).null_count for c in numeric):
        return None
    frame = table.to_pandas()
    frame["_line"] = line_numbers
    return frame


def _parse_checked(data, line_numbers, file, separator, columns, numeric, encoding, quarantine):
    """Parse as text, then quarantine every value that is not a number (the slow path)."""
    if not data:
        return _empty_frame(columns, numeric)
    frame = pd.read_csv(io.BytesIO(data), dtype=str, **_csv_options(separator, columns, encoding))
    frame["_line"] = line_numbers
    bad = np.zeros(len(frame), dtype=bool)
    reasons = np.full(len(frame), "", dtype=object)
    for column, dtype in numeric.items():
        text = frame[column].str.strip()
        values = pd.to_numeric(text, errors="coerce")
        if np.dtype(dtype).kind == "i":
            not_integer = values.notna() & (values != values.round())
            values = values.where(~not_integer)
        invalid = values.isna().to_numpy() & ~bad
        for index in np.flatnonzero(invalid):
            shown = text.iat[index]
            reasons[index] = (
                f"missing field: {column} is empty" if shown == "" else f"bad value: {column} is {shown!r}, not a number"
            )
        bad |= invalid
        frame[column] = values
    shown_separator = separator.decode()
    for index in np.flatnonzero(bad):
        raw = shown_separator.join(str(frame[c].iat[index]) for c in columns)
        quarantine.add(file, frame["_line"].iat[index], reasons[index], raw)
    frame = frame[~bad].reset_index(drop=True)
    for column, dtype in numeric.items():
        frame[column] = frame[column].astype(dtype)
    return frame


def _read_file(folder: Path, file: str, layout: Layout, separator: bytes, quarantine, has_header=False):
    """Lines of a file whose fields cannot be counted byte-wise (quoted CSV, titles with '::')."""
    data = (folder / file).read_bytes()
    with quarantine.reading(file, data):
        clean = split_lines(data, file=file, encoding=layout.encoding, separator=separator,
                            n_fields=None, quarantine=quarantine, has_header=has_header)
    _note_unterminated(quarantine, file, clean)
    return clean


def _note_unterminated(quarantine: Quarantine, file: str, clean) -> None:
    if clean.unterminated_line is not None:
        quarantine.unterminated[file] = clean.unterminated_line


_RATING_COLUMNS = ["user_id", "movie_id", "rating", "timestamp"]
_RATING_DTYPES = {"user_id": "int64", "movie_id": "int64", "rating": "float64", "timestamp": "int64"}


def _ratings_frame(frame: pd.DataFrame) -> pd.DataFrame:
    frame["rating"] = frame["rating"].astype("float32")
    return frame[_RATING_COLUMNS + ["_line"]]


def _read_ml100k(folder: Path, layout: Layout, quarantine: Quarantine) -> RawTables:
    read, blank = {}, 0
    ratings, read["u.data"], b = _read_table(folder, "u.data", layout, b"\t", _RATING_COLUMNS, _RATING_DTYPES, quarantine)
    blank += b
    users, read["u.user"], b = _read_table(folder, "u.user", layout, b"|", ["user_id", "age", "gender", "occupation", "zip"],
                                           {"user_id": "int64", "age": "int64"}, quarantine)
    blank += b
    item_columns = ["movie_id", "title", "release_date", "video_release_date", "url"] + [f"g{i}" for i in range(19)]
    items, read["u.item"], b = _read_table(folder, "u.item", layout, b"|", item_columns,
                                           {"movie_id": "int64", **{f"g{i}": "int64" for i in range(19)}}, quarantine)
    blank += b
    flags = items[[f"g{i}" for i in range(19)]].to_numpy()
    bad_flags = ~np.isin(flags, (0, 1)).all(axis=1)
    for index in np.flatnonzero(bad_flags):
        quarantine.add("u.item", items["_line"].iat[index], "bad value: genre flags must be 0 or 1",
                       "|".join(str(v) for v in items.iloc[index, :24]))
    items = items[~bad_flags].reset_index(drop=True)
    flags = flags[~bad_flags]
    genre_names = np.array(GENRES, dtype=object)
    genres = ["|".join(genre_names[row.astype(bool)]) for row in flags]
    years = pd.to_numeric(items["release_date"].str[-4:], errors="coerce").astype("Int64")
    movies = pd.DataFrame({
        "movie_id": items["movie_id"], "title": items["title"], "year": years,
        "genres": genres, "_line": items["_line"],
    })
    return RawTables(layout, _ratings_frame(ratings), users, movies, read, blank)


def _colons_to_tabs(data: bytes) -> bytes:
    # Numbers and codes only: safe, and lets pandas' C parser run (it needs a 1-byte separator).
    return data.replace(b"::", b"\t")


def _read_ml1m(folder: Path, layout: Layout, quarantine: Quarantine) -> RawTables:
    read, blank = {}, 0
    ratings, read["ratings.dat"], b = _read_table(folder, "ratings.dat", layout, b"::", _RATING_COLUMNS, _RATING_DTYPES,
                                                  quarantine, transform=_colons_to_tabs)
    blank += b
    users, read["users.dat"], b = _read_table(folder, "users.dat", layout, b"::", ["user_id", "gender", "age", "occupation", "zip"],
                                              {"user_id": "int64", "age": "int64", "occupation": "int64"}, quarantine,
                                              transform=_colons_to_tabs)
    blank += b
    codes = users["occupation"].to_numpy()
    bad_code = (codes < 0) | (codes >= len(ML1M_OCCUPATIONS))
    for index in np.flatnonzero(bad_code):
        quarantine.add("users.dat", users["_line"].iat[index], f"bad value: occupation code {codes[index]} is not 0..20", "")
    users = users[~bad_code].reset_index(drop=True)
    users["occupation"] = np.array(ML1M_OCCUPATIONS, dtype=object)[users["occupation"].to_numpy()]
    users = users[["user_id", "age", "gender", "occupation", "zip", "_line"]]

    # Titles may hold ':' so split from both ends instead of counting separators.
    clean = _read_file(folder, "movies.dat", layout, b"::", quarantine)
    read["movies.dat"], blank = clean.read, blank + clean.blank
    rows = []
    text_lines = clean.data.decode("latin-1").split("\n") if clean.data else []
    for line, number in zip(text_lines, clean.line_numbers.tolist()):
        head, sep, rest = line.partition("::")
        title, sep2, genres = rest.rpartition("::")
        if not sep or not sep2:
            quarantine.add("movies.dat", number, "wrong field count: expected MovieID::Title::Genres", line[:500])
            continue
        rows.append((head, title, genres, number))
    movies = _movies_from_titles(rows, "movies.dat", quarantine)
    return RawTables(layout, _ratings_frame(ratings), users, movies, read, blank)


def _read_mllatest(folder: Path, layout: Layout, quarantine: Quarantine) -> RawTables:
    read, blank = {}, 0
    ratings, read["ratings.csv"], blank = _read_table(folder, "ratings.csv", layout, b",", _RATING_COLUMNS, _RATING_DTYPES,
                                                      quarantine, has_header=True)
    # movies.csv quotes titles that hold commas: the csv module, not byte counting.
    clean = _read_file(folder, "movies.csv", layout, b",", quarantine, has_header=True)
    read["movies.csv"], blank = clean.read, blank + clean.blank
    rows = []
    text = clean.data.decode("utf-8") if clean.data else ""
    for fields, number in zip(csv.reader(io.StringIO(text)), clean.line_numbers.tolist()):
        if len(fields) != 3:
            quarantine.add("movies.csv", number, f"wrong field count: expected 3 fields, found {len(fields)}", ",".join(fields)[:500])
            continue
        rows.append((fields[0], fields[1], fields[2], number))
    movies = _movies_from_titles(rows, "movies.csv", quarantine)
    return RawTables(layout, _ratings_frame(ratings), _empty_users(), movies, read, blank)


def _movies_from_titles(rows: list, file: str, quarantine: Quarantine) -> pd.DataFrame:
    """Movies from (id, "Title (Year)", "G1|G2", line) tuples, as ml-1m and ml-latest write them."""
    ids, titles, years, genres, lines = [], [], [], [], []
    for movie_id, title, genre_text, number in rows:
        movie_id = movie_id.strip()
        if not movie_id.isdigit():
            quarantine.add(file, number, f"bad value: movie_id is {movie_id!r}, not a number", f"{movie_id}::{title}"[:500])
            continue
        match = _YEAR_IN_TITLE.search(title)
        ids.append(int(movie_id))
        titles.append(title)
        years.append(int(match.group(1)) if match else None)
        genres.append("" if genre_text == "(no genres listed)" else genre_text)
        lines.append(number)
    return pd.DataFrame({
        "movie_id": np.array(ids, dtype=np.int64), "title": pd.Series(titles, dtype=object),
        "year": pd.array(years, dtype="Int64"), "genres": pd.Series(genres, dtype=object),
        "_line": np.array(lines, dtype=np.int64),
    })


def _empty_users() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": pd.Series(dtype="int64"), "age": pd.Series(dtype="int64"),
        "gender": pd.Series(dtype=object), "occupation": pd.Series(dtype=object),
        "zip": pd.Series(dtype=object), "_line": pd.Series(dtype="int64"),
    })
