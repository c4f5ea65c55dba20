"""Feature engineering: one set of functions for training, batch scoring and online serving.

User features (age band, gender, occupation, activity, mean rating) and movie features
(genres, year, popularity, mean rating) are computed from training ratings only, saved
with the model, and read back by the same code wherever the model runs, so there is no
training/serving skew.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reelops.data.layouts import GENRES

# Age bands of the demographic features (the edges between bands, in years).
AGE_BAND_EDGES = (18, 25, 35, 45, 56)
AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-55", "56+")
GENDERS = ("F", "M")
UNKNOWN = "unknown"

USER_FEATURE_COLUMNS = ["user_id", "age", "age_band", "gender", "occupation", "activity", "mean_rating"]
MOVIE_FEATURE_COLUMNS = ["movie_id", "year", "popularity", "mean_rating", *[f"genre_{g}" for g in GENRES]]


def age_band(age) -> np.ndarray:
    """Age band label of each age (``unknown`` for missing ages)."""
    ages = pd.to_numeric(pd.Series(np.atleast_1d(age)), errors="coerce").to_numpy(dtype=float)
    bands = np.array(AGE_BANDS, dtype=object)[np.digitize(np.nan_to_num(ages, nan=0.0), AGE_BAND_EDGES)]
    bands[np.isnan(ages)] = UNKNOWN
    return bands


def genre_matrix(genres: pd.Series) -> np.ndarray:
    """Multi-hot genre flags (movies x 19) from ``"A|B"`` strings."""
    index = {name: i for i, name in enumerate(GENRES)}
    flags = np.zeros((len(genres), len(GENRES)), dtype=np.float32)
    for row, text in enumerate(genres.fillna("").astype(str)):
        for name in text.split("|"):
            column = index.get(name)
            if column is not None:
                flags[row, column] = 1.0
    return flags


@dataclass
class FeatureSet:
    """User and movie feature tables computed from training data."""

    users: pd.DataFrame
    movies: pd.DataFrame
    occupations: list

    def save(self, folder: Path) -> None:
        self.users.to_parquet(Path(folder) / "user_features.parquet", index=False)
        self.movies.to_parquet(Path(folder) / "movie_features.parquet", index=False)

    @classmethod
    def load(cls, folder: Path) -> "FeatureSet":
        users = pd.read_parquet(Path(folder) / "user_features.parquet")
        movies = pd.read_parquet(Path(folder) / "movie_features.parquet")
        occupations = sorted(set(users["occupation"]) - {UNKNOWN})
        return cls(users=users, movies=movies, occupations=occupations)

    def schema(self) -> dict:
        """Column names and dtypes (recorded in model.json)."""
        return {
            "users": {c: str(t) for c, t in self.users.dtypes.items()},
            "movies": {c: str(t) for c, t in self.movies.dtypes.items()},
        }


# Written beside the feature tables by the pipeline's features step: what they were built from.
PROVENANCE_FILE = "features.json"


def save_for_training(features: FeatureSet, folder: Path, manifest: dict, holdout: str) -> dict:
    """Save feature tables with the dataset version and split they were computed from.

    Returns:
        The provenance written (``features.json``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    features.save(folder)
    provenance = {"dataset_version": manifest["version"], "dataset_hash": manifest["content_hash"], "holdout": holdout,
                  "users": int(len(features.users)), "movies": int(len(features.movies))}
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True))
    return provenance


def load_for_training(folder: Path, manifest: dict, holdout: str) -> FeatureSet:
    """Feature tables for training on a dataset version with a split, checked to be theirs.

    Raises:
        ValueError: the tables were computed from another dataset version or split (a
            model fitted on them would disagree with its own training rows).
    """
    folder = Path(folder)
    recorded = folder / PROVENANCE_FILE
    if not recorded.is_file():
        raise ValueError(f"{folder}: no {PROVENANCE_FILE}; features for training come from the features step")
    provenance = json.loads(recorded.read_text())
    expected = {"dataset_hash": manifest["content_hash"], "holdout": holdout}
    found = {key: provenance.get(key) for key in expected}
    if found != expected:
        raise ValueError(f"{folder}: features of dataset {provenance.get('dataset_version')} split {found['holdout']}, "
                         f"but training uses dataset {manifest['version']} split {holdout}")
    return FeatureSet.load(folder)


def build_features(ratings: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame) -> FeatureSet:
    """Features of every user and movie, from the given (training) ratings only.

    Args:
        ratings: training ratings (user_id, movie_id, rating, timestamp).
        users: user demographics; may be empty (layouts without demographics).
        movies: movie catalogue (movie_id, title, year, genres).
    """
    per_user = ratings.groupby("user_id")["rating"].agg(["size", "mean"])
    user_ids = np.union1d(users["user_id"].to_numpy(np.int64) if len(users) else np.array([], np.int64),
                          per_user.index.to_numpy(np.int64))
    demo = users.set_index("user_id").reindex(user_ids) if len(users) else pd.DataFrame(index=user_ids)
    user_table = user_feature_rows(
        user_ids,
        demo["age"].to_numpy() if "age" in demo else np.full(len(user_ids), np.nan),
        demo["gender"].to_numpy() if "gender" in demo else np.full(len(user_ids), None),
        demo["occupation"].to_numpy() if "occupation" in demo else np.full(len(user_ids), None),
    )
    user_table["activity"] = per_user["size"].reindex(user_ids, fill_value=0).to_numpy(np.int64)
    user_table["mean_rating"] = per_user["mean"].reindex(user_ids).to_numpy(np.float64)

    per_movie = ratings.groupby("movie_id")["rating"].agg(["size", "mean"])
    movie_ids = movies["movie_id"].to_numpy(np.int64)
    movie_table = pd.DataFrame({
        "movie_id": movie_ids,
        "year": pd.array(movies["year"], dtype="Int64"),
        "popularity": per_movie["size"].reindex(movie_ids, fill_value=0).to_numpy(np.int64),
        "mean_rating": per_movie["mean"].reindex(movie_ids).to_numpy(np.float64),
    })
    flags = genre_matrix(movies["genres"])
    for column, name in enumerate(GENRES):
        movie_table[f"genre_{name}"] = flags[:, column]
    occupations = sorted(set(user_table["occupation"]) - {UNKNOWN})
    return FeatureSet(users=user_table[USER_FEATURE_COLUMNS], movies=movie_table, occupations=occupations)


def user_feature_rows(user_ids, ages, genders, occupations) -> pd.DataFrame:
    """Demographic feature rows, the same at training time and for a user seen at serving.

    Missing or malformed values become ``unknown`` instead of raising: a request with a
    partial description still gets the parts that are known.
    """
    genders = np.array([g if g in GENDERS else UNKNOWN for g in np.atleast_1d(genders)], dtype=object)
    occupations = np.array([o.strip().lower() if isinstance(o, str) and o.strip() else UNKNOWN
                            for o in np.atleast_1d(occupations)], dtype=object)
    ages = pd.to_numeric(pd.Series(np.atleast_1d(ages)), errors="coerce").to_numpy(dtype=float)
    return pd.DataFrame({
        "user_id": np.atleast_1d(user_ids).astype(np.int64),
        "age": ages,
        "age_band": age_band(ages),
        "gender": genders,
        "occupation": occupations,
    })


def demographic_keys(table: pd.DataFrame) -> list:
    """The categorical feature values of each user, as ``"name=value"`` keys."""
    return [
        [f"age_band={a}", f"gender={g}", f"occupation={o}"]
        for a, g, o in zip(table["age_band"], table["gender"], table["occupation"])
    ]
