"""Checks of meaning on parsed MovieLens tables: every bad row is quarantined, never dropped.

A row is bad when a value is outside its domain (rating off the layout's scale, an id that
is not positive, an age outside 1..120, a timestamp outside the plausible range), when it
refers to a user or movie that is not in the catalogue, or when it repeats a key (a
(user, movie) pair rated twice, an id listed twice). Oddities of real data that are not
errors (the same title under two ids, a movie with no release date) become warnings.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reelops.data.layouts import RawTables
from reelops.data.lines import Quarantine

# MovieLens started collecting ratings in 1995; a later timestamp than "tomorrow" is a bug.
MIN_TIMESTAMP = int(_dt.datetime(1995, 1, 1, tzinfo=_dt.timezone.utc).timestamp())


def max_timestamp() -> int:
    """Latest plausible timestamp: one day from now."""
    return int(_dt.datetime.now(_dt.timezone.utc).timestamp()) + 86_400


class DataValidationError(ValueError):
    """The share of bad rows is above the limit; the message says what was wrong."""


@dataclass
class ValidatedData:
    """Canonical tables of one source plus everything the checks found."""

    layout: str
    ratings: pd.DataFrame
    users: pd.DataFrame
    movies: pd.DataFrame
    quarantine: Quarantine
    counts: dict
    warnings: list = field(default_factory=list)
    blank_lines: int = 0

    @property
    def total_read(self) -> int:
        return sum(c["read"] for c in self.counts.values())

    @property
    def total_quarantined(self) -> int:
        return sum(c["quarantined"] for c in self.counts.values())

    @property
    def bad_share(self) -> float:
        return self.total_quarantined / self.total_read if self.total_read else 0.0


def _reject(frame: pd.DataFrame, bad: np.ndarray, reasons, file: str, quarantine: Quarantine, columns: list) -> pd.DataFrame:
    """Quarantine the rows of ``frame`` flagged in ``bad`` and return the others.

    ``reasons`` is one string for all flagged rows, or a function of the flagged rows that
    returns one reason per row.
    """
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return frame
    flagged = frame[bad]
    # Reasons are built for flagged rows only: a clean million-row file pays nothing here.
    reason_list = [reasons] * len(flagged) if isinstance(reasons, str) else list(reasons(flagged))
    raw = flagged[columns].astype(str).agg("\t".join, axis=1).tolist()
    for line, reason, text in zip(flagged["_line"].tolist(), reason_list, raw):
        quarantine.add(file, line, reason, text)
    return frame[~bad].reset_index(drop=True)


# Largest key space checked with a bit table (50 MB) instead of hashing every key.
_TABLE_LIMIT = 50_000_000


def _has_repeats(frame: pd.DataFrame, keys: list) -> bool:
    """Whether any key repeats; a presence table answers fast for ids in a small range."""
    columns = [frame[k].to_numpy() for k in keys]
    if len(frame) == 0 or any(c.dtype.kind not in "iu" or c.min() < 0 for c in columns):
        return True  # let pandas decide
    spans = [int(c.max()) + 1 for c in columns]
    if np.prod(spans, dtype=float) > _TABLE_LIMIT:
        return True
    packed = columns[0].astype(np.int64)
    for column, span in zip(columns[1:], spans[1:]):
        packed = packed * span + column
    seen = np.zeros(int(np.prod(spans)), dtype=bool)
    seen[packed] = True
    return int(seen.sum()) != len(packed)


def _duplicates(frame: pd.DataFrame, keys: list) -> tuple:
    """Later occurrences of a repeated key, and the line of the first one."""
    if not _has_repeats(frame, keys):
        return np.zeros(len(frame), dtype=bool), None
    duplicated = frame.duplicated(keys, keep="first").to_numpy()
    if not duplicated.any():
        return duplicated, None
    first_lines = frame.groupby(keys, sort=False)["_line"].transform("first").to_numpy()
    return duplicated, first_lines


def validate_tables(raw: RawTables, quarantine: Quarantine) -> ValidatedData:
    """Check the parsed tables, quarantine bad rows and return canonical frames."""
    layout = raw.layout
    users_file, movies_file, ratings_file = layout.users_file, layout.movies_file, layout.ratings_file
    warnings: list = []

    users = raw.users
    if users_file:
        columns = ["user_id", "age", "gender", "occupation", "zip"]
        users = _reject(users, users["user_id"].to_numpy() <= 0, "bad value: user_id must be positive", users_file, quarantine, columns)
        ages = users["age"].to_numpy()
        users = _reject(users, (ages < 1) | (ages > 120), lambda rows: [f"bad value: age {a} is outside 1..120" for a in rows["age"]], users_file, quarantine, columns)
        gender = users["gender"].astype(str).str.strip()
        users = _reject(users, ~gender.isin(["M", "F"]).to_numpy(),
                        lambda rows: [f"bad value: gender {g!r} is not M or F" for g in rows["gender"]], users_file, quarantine, columns)
        occupation = users["occupation"].astype(str).str.strip()
        users = _reject(users, (occupation == "").to_numpy(), "missing field: occupation is empty", users_file, quarantine, columns)
        dup, first = _duplicates(users, ["user_id"])
        if dup.any():
            users = _reject(users, dup, lambda rows: [f"duplicate: user_id already defined on line {f}" for f in first[dup]], users_file, quarantine, columns)

    movies = raw.movies
    columns = ["movie_id", "title", "year", "genres"]
    movies = _reject(movies, movies["movie_id"].to_numpy() <= 0, "bad value: movie_id must be positive", movies_file, quarantine, columns)
    titles = movies["title"].astype(str).str.strip()
    movies = _reject(movies, (titles == "").to_numpy(), "missing field: title is empty", movies_file, quarantine, columns)
    dup, first = _duplicates(movies, ["movie_id"])
    if dup.any():
        movies = _reject(movies, dup, lambda rows: [f"duplicate: movie_id already defined on line {f}" for f in first[dup]], movies_file, quarantine, columns)
    no_year = movies["year"].isna()
    if no_year.any():
        listed = ", ".join(f"{m} ({t})" for m, t in zip(movies.loc[no_year, "movie_id"].head(5), movies.loc[no_year, "title"].head(5)))
        warnings.append(f"{movies_file}: {int(no_year.sum())} movie(s) without a release year: {listed}")
    shared_titles = movies["title"][movies["title"].duplicated(keep=False)]
    if len(shared_titles):
        warnings.append(f"{movies_file}: {shared_titles.nunique()} title(s) appear under more than one movie id")

    ratings = raw.ratings
    columns = ["user_id", "movie_id", "rating", "timestamp"]
    scale = np.array(layout.rating_values, dtype=np.float32)
    values = ratings["rating"].to_numpy()
    off_scale = ~np.isin(values, scale)
    ratings = _reject(ratings, off_scale,
                      lambda rows: [f"bad value: rating {v:g} is not on the {layout.name} scale ({scale.min():g}..{scale.max():g})" for v in rows["rating"]],
                      ratings_file, quarantine, columns)
    ids_bad = (ratings["user_id"].to_numpy() <= 0) | (ratings["movie_id"].to_numpy() <= 0)
    ratings = _reject(ratings, ids_bad, "bad value: user_id and movie_id must be positive", ratings_file, quarantine, columns)
    stamps = ratings["timestamp"].to_numpy()
    latest = max_timestamp()
    out_of_range = (stamps < MIN_TIMESTAMP) | (stamps > latest)
    ratings = _reject(ratings, out_of_range,
                      lambda rows: [f"bad value: timestamp {t} is outside {MIN_TIMESTAMP}..{latest}" for t in rows["timestamp"]],
                      ratings_file, quarantine, columns)
    if users_file:
        unknown_user = ~np.isin(ratings["user_id"].to_numpy(), users["user_id"].to_numpy())
        ratings = _reject(ratings, unknown_user,
                          lambda rows: [f"unknown user: user_id {u} is not in {users_file}" for u in rows["user_id"]],
                          ratings_file, quarantine, columns)
    unknown_movie = ~np.isin(ratings["movie_id"].to_numpy(), movies["movie_id"].to_numpy())
    ratings = _reject(ratings, unknown_movie,
                      lambda rows: [f"unknown movie: movie_id {m} is not in {movies_file}" for m in rows["movie_id"]],
                      ratings_file, quarantine, columns)
    dup, first = _duplicates(ratings, ["user_id", "movie_id"])
    if dup.any():
        ratings = _reject(ratings, dup, lambda rows: [f"duplicate: (user, movie) already rated on line {f}" for f in first[dup]],
                          ratings_file, quarantine, columns)

    counts = {}
    for file, frame in ((ratings_file, ratings), (users_file, users), (movies_file, movies)):
        if file:
            counts[file] = {"read": raw.read[file], "valid": int(len(frame)), "quarantined": quarantine.count(file)}
            assert counts[file]["read"] == counts[file]["valid"] + counts[file]["quarantined"], counts
    if raw.blank_lines:
        warnings.append(f"{raw.blank_lines} blank line(s) skipped")
    bad_lines = {(row["file"], row["line"]) for row in quarantine.rows}
    for file, line in sorted(quarantine.unterminated.items()):
        if (file, line) in bad_lines:
            warnings.append(f"{file}: the last line ({line}) has no newline and was quarantined: "
                            f"the file looks truncated")

    return ValidatedData(
        layout=layout.name,
        ratings=canonical_ratings(ratings),
        users=canonical_users(users),
        movies=canonical_movies(movies),
        quarantine=quarantine,
        counts=counts,
        warnings=warnings,
        blank_lines=raw.blank_lines,
    )


def canonical_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """Ratings in time order (ties by user, movie): the order every later stage relies on."""
    users = frame["user_id"].to_numpy(np.int64)
    movies = frame["movie_id"].to_numpy(np.int64)
    stamps = frame["timestamp"].to_numpy(np.int64)
    order = _time_user_movie_order(stamps, users, movies)
    columns = {"user_id": users, "movie_id": movies, "rating": frame["rating"].to_numpy(np.float32), "timestamp": stamps}
    if order is not None:
        columns = {name: values[order] for name, values in columns.items()}
    return pd.DataFrame(columns)


def _time_user_movie_order(stamps: np.ndarray, users: np.ndarray, movies: np.ndarray):
    """The permutation that sorts by (timestamp, user, movie), or None if already sorted.

    One packed int64 key sorts several times faster than a three-key lexsort; the
    lexsort stays for ranges too wide to pack.
    """
    if len(stamps) == 0:
        return None
    user_span, movie_span = int(users.max()) + 1, int(movies.max()) + 1
    low = int(stamps.min())
    time_span = int(stamps.max()) - low + 1
    if users.min() >= 0 and movies.min() >= 0 and time_span * user_span * movie_span < 2**62:
        key = ((stamps - low) * user_span + users) * movie_span + movies
        if (key[1:] >= key[:-1]).all():
            return None
        return np.argsort(key)  # keys are unique (pairs were de-duplicated), so any sort is stable
    return np.lexsort((movies, users, stamps))


def canonical_users(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "user_id": frame["user_id"].to_numpy(np.int64),
        "age": frame["age"].to_numpy(np.int64),
        "gender": frame["gender"].astype(str).str.strip().to_numpy(object),
        "occupation": frame["occupation"].astype(str).str.strip().to_numpy(object),
        "zip": frame["zip"].astype(str).str.strip().to_numpy(object),
    })
    return out.sort_values("user_id", kind="stable").reset_index(drop=True)


def canonical_movies(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "movie_id": frame["movie_id"].to_numpy(np.int64),
        "title": frame["title"].astype(str).to_numpy(object),
        "year": pd.array(frame["year"], dtype="Int64"),
        "genres": frame["genres"].astype(str).to_numpy(object),
    })
    return out.sort_values("movie_id", kind="stable").reset_index(drop=True)
