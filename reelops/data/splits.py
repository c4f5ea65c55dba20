"""Splits of a ratings table: by time, per user in time, leave-last-out, and seeded K-fold.

Every split returns ``(train, test)`` frames (K-fold: a list of them) and never shuffles
rows within a frame, so results are reproducible from the seed alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def time_split(ratings: pd.DataFrame, cutoff: int | None = None, quantile: float | None = None) -> tuple:
    """Global split in time: rows before the cutoff train, the rest test.

    Args:
        ratings: canonical ratings.
        cutoff: a unix timestamp; rows with ``timestamp < cutoff`` are training rows.
        quantile: instead of a cutoff, the share of rows (in time order) used for training.
    """
    if (cutoff is None) == (quantile is None):
        raise ValueError("time_split needs exactly one of cutoff or quantile")
    if quantile is not None:
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        cutoff = int(np.quantile(ratings["timestamp"].to_numpy(), quantile, method="higher"))
    in_train = ratings["timestamp"].to_numpy() < cutoff
    return ratings[in_train].reset_index(drop=True), ratings[~in_train].reset_index(drop=True)


def _rank_in_user_time(ratings: pd.DataFrame) -> tuple:
    """Position of each row in its user's time order (0 = oldest) and the user's count."""
    order = np.lexsort((ratings["movie_id"].to_numpy(), ratings["timestamp"].to_numpy(), ratings["user_id"].to_numpy()))
    users_sorted = ratings["user_id"].to_numpy()[order]
    starts = np.flatnonzero(np.concatenate(([True], users_sorted[1:] != users_sorted[:-1])))
    counts_per_group = np.diff(np.concatenate((starts, [len(order)])))
    rank_sorted = np.arange(len(order)) - np.repeat(starts, counts_per_group)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = rank_sorted
    count = np.empty(len(order), dtype=np.int64)
    count[order] = np.repeat(counts_per_group, counts_per_group)
    return rank, count


def user_time_holdout(ratings: pd.DataFrame, test_fraction: float = 0.2, min_train: int = 1) -> tuple:
    """Per-user time holdout: each user's last ``test_fraction`` of ratings are the test set.

    A user keeps at least ``min_train`` training ratings; users with fewer ratings than
    that have no test rows.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rank, count = _rank_in_user_time(ratings)
    n_test = np.floor(count * test_fraction).astype(np.int64)
    n_test = np.minimum(n_test, np.maximum(count - min_train, 0))
    is_test = rank >= count - n_test
    return ratings[~is_test].reset_index(drop=True), ratings[is_test].reset_index(drop=True)


def leave_last_out_split(ratings: pd.DataFrame, n_last: int = 1) -> tuple:
    """Each user's ``n_last`` most recent ratings are the test set (users keep one to train)."""
    rank, count = _rank_in_user_time(ratings)
    is_test = (rank >= count - n_last) & (count > n_last)
    return ratings[~is_test].reset_index(drop=True), ratings[is_test].reset_index(drop=True)


def kfold_split(ratings: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> list:
    """Seeded random K-fold over rows (the protocol of the Surprise benchmark table)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    fold_of_row = np.random.default_rng(seed).permutation(len(ratings)) % n_folds
    return [
        (ratings[fold_of_row != k].reset_index(drop=True), ratings[fold_of_row == k].reset_index(drop=True))
        for k in range(n_folds)
    ]


# The held-out splits a model can be trained with (recorded in the model, reused by the gate).
HOLDOUTS = ("user-time-20", "none")


def holdout_split(ratings, holdout: str):
    """The training split a model is fitted on: ``(train, test)``; test is empty for ``none``."""
    if holdout == "none":
        return ratings, ratings.iloc[:0]
    if holdout == "user-time-20":
        return user_time_holdout(ratings, test_fraction=0.2)
    raise ValueError(f"unknown holdout {holdout!r}; choose from {', '.join(HOLDOUTS)}")
