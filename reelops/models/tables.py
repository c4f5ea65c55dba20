"""Recommendations as tables: every user's top K in one long frame (what batch scoring writes)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def top_k_table(model, k: int, version: str, batch: int = 1024) -> pd.DataFrame:
    """Recommendations of every user the model knows, one row per user and rank.

    Args:
        model: a fitted :class:`reelops.models.Recommender`.
        k: recommendations per user.
        version: the model version written in every row.
        batch: users scored per call.

    Returns:
        ``user_id, rank, movie_id, score, path, model_version``.
    """
    parts = []
    for start in range(0, len(model.user_ids_), batch):
        users = model.user_ids_[start: start + batch]
        answer = model.recommend(users, k=k, exclude_rated=True)
        ranks = np.tile(np.arange(1, answer.movie_ids.shape[1] + 1), len(users))
        part = pd.DataFrame({"user_id": np.repeat(users, answer.movie_ids.shape[1]), "rank": ranks,
                             "movie_id": answer.movie_ids.ravel(), "score": answer.scores.ravel(),
                             "path": np.repeat(answer.paths, answer.movie_ids.shape[1])})
        parts.append(part[part["movie_id"] >= 0])
    table = pd.concat(parts, ignore_index=True)
    table["model_version"] = str(version)
    return table
