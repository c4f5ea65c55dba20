"""The training data of a retrain: a model's dataset plus the new data, as one canonical version."""

from __future__ import annotations

import pandas as pd

from reelops.data.lines import Quarantine
from reelops.data.validation import ValidatedData, canonical_movies, canonical_ratings, canonical_users


def combine(base: dict, new: dict) -> ValidatedData:
    """The union of two loaded datasets (``load_dataset`` results), ready to be written as a version.

    A (user, movie) pair present in both keeps its newer rating; users and movies are the
    union, the new rows winning.
    """
    ratings = pd.concat([base["ratings"], new["ratings"]], ignore_index=True)
    ratings = ratings.sort_values("timestamp", kind="stable").drop_duplicates(["user_id", "movie_id"], keep="last")
    users = pd.concat([base["users"], new["users"]]).drop_duplicates("user_id", keep="last")
    movies = pd.concat([base["movies"], new["movies"]]).drop_duplicates("movie_id", keep="last")
    return ValidatedData(layout="combined", ratings=canonical_ratings(ratings), users=canonical_users(users),
                         movies=canonical_movies(movies), quarantine=Quarantine(),
                         counts={"combined": {"read": len(ratings), "valid": len(ratings), "quarantined": 0}})
