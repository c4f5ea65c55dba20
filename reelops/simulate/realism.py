"""Realism checks: how a simulated world's statistics compare with a real dataset's."""

from __future__ import annotations

import numpy as np
import pandas as pd


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = equal, 1 = one holds everything)."""
    values = np.sort(np.asarray(counts, dtype=float))
    if values.sum() == 0:
        return 0.0
    n = len(values)
    return float((2 * np.arange(1, n + 1) - n - 1).dot(values) / (n * values.sum()))


def realism_stats(ratings: pd.DataFrame, n_users: int | None = None, n_movies: int | None = None) -> dict:
    """The statistics ``simulate compare`` puts side by side."""
    ratings = ratings.sort_values(["timestamp", "user_id", "movie_id"], kind="stable")
    stars = np.round(ratings["rating"].to_numpy()).astype(int)
    shares = np.bincount(stars, minlength=6)[1:6] / len(stars)
    n_users = n_users or ratings["user_id"].nunique()
    n_movies = n_movies or ratings["movie_id"].nunique()
    users = ratings["user_id"].to_numpy()
    windows = [len(np.unique(users[i: i + 1000])) for i in range(0, len(users) - 999, 1000)]
    return {
        "star_shares": shares.tolist(),
        "mean_rating": float(ratings["rating"].mean()),
        "density": len(ratings) / (n_users * n_movies),
        "gini_movie_popularity": gini(ratings["movie_id"].value_counts().reindex(range(1, n_movies + 1), fill_value=0).to_numpy()),
        "gini_user_activity": gini(ratings["user_id"].value_counts().to_numpy()),
        "median_users_per_1000": float(np.median(windows)) if windows else float("nan"),
    }


def compare_worlds(sim: dict, real: dict) -> list:
    """Rows of (statistic, simulated, real, tolerance, ok) for the realism checks."""
    rows = []
    for star in range(5):
        s, r = sim["star_shares"][star], real["star_shares"][star]
        rows.append((f"share of {star + 1} stars", s, r, "±2 points", abs(s - r) <= 0.02))
    rows.append(("mean rating", sim["mean_rating"], real["mean_rating"], "±0.05", abs(sim["mean_rating"] - real["mean_rating"]) <= 0.05))
    rows.append(("density", sim["density"], real["density"], "±1 point", abs(sim["density"] - real["density"]) <= 0.01))
    for key, label in (("gini_movie_popularity", "Gini of movie popularity"), ("gini_user_activity", "Gini of user activity")):
        rows.append((label, sim[key], real[key], "±0.05", abs(sim[key] - real[key]) <= 0.05))
    s, r = sim["median_users_per_1000"], real["median_users_per_1000"]
    rows.append(("median users per 1,000 ratings", s, r, "±30%", abs(s - r) <= 0.3 * r))
    return rows
