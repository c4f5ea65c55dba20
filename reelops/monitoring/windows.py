"""Windows of production data: consecutive ratings in time order, and what a test may sample from one.

A detector reports on a window of ``WINDOW_SIZE`` consecutive ratings. People rate in
sessions, so a test that counts every rating of a window counts one person many times;
:func:`sample_per_user` keeps at most a few ratings per user.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW_SIZE = 1000
REQUIRED_COLUMNS = ("user_id", "movie_id", "rating", "timestamp")


def time_windows(ratings: pd.DataFrame, size: int = WINDOW_SIZE) -> list:
    """Consecutive windows of ``size`` ratings in time order (the last partial one dropped)."""
    ordered = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
    return [ordered.iloc[start: start + size] for start in range(0, len(ordered) - size + 1, size)]


def sample_per_user(window: pd.DataFrame, per_user: int, seed: int) -> pd.DataFrame:
    """At most ``per_user`` ratings of each user (seeded): sessions must not dominate a test."""
    order = np.random.default_rng(seed).permutation(len(window))
    users = window["user_id"].to_numpy()[order]
    # Rank of each row within its user, in the shuffled order (a numpy groupby-cumcount).
    by_user = np.argsort(users, kind="stable")
    sorted_users = users[by_user]
    starts = np.concatenate(([0], np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1))
    rank_sorted = np.arange(len(users)) - np.repeat(starts, np.diff(np.concatenate((starts, [len(users)]))))
    rank = np.empty(len(users), dtype=np.int64)
    rank[by_user] = rank_sorted
    return window.iloc[order[rank < per_user]]


def category_codes(values, vocabulary: list) -> tuple:
    """Integer codes of categorical values; -1 for values outside the vocabulary."""
    index = {value: code for code, value in enumerate(vocabulary)}
    codes = np.array([index.get(value, -1) for value in values], dtype=np.int64)
    return codes


def primary_genre(flags: np.ndarray) -> np.ndarray:
    """The first listed genre of each movie other than 'unknown' (index), -1 if none."""
    has = flags[:, 1:] > 0
    first = np.argmax(has, axis=1) + 1
    return np.where(has.any(axis=1), first, -1)
