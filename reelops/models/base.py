"""The one model interface every recommender implements, with shared cold-start paths.

A :class:`Recommender` follows the scikit-learn estimator protocol (``get_params``,
``set_params``, ``sklearn.base.clone``, ``fit(X, y)``, ``predict(X)`` on a frame of
``user_id, movie_id``, ``score`` as R²) without inheriting from scikit-learn: importing
``sklearn.base`` costs every pipeline step about 1.6 s, and the protocol is duck-typed. It adds the
recommender calls on top: rating prediction with the path that served it, top-K
recommendation over the full catalogue, and save/load of a model directory that needs
nothing else to load.

Every model shares three answer paths:

- ``personal``: a known user (and, for ratings, a known movie): the model itself;
- ``side_features``: a new user described by demographics: per-demographic preferences
  learned from training users (what makes cold start better than popularity);
- ``popularity``: an unknown id without a description: popularity and biases.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from reelops import buildinfo
from reelops.features import FeatureSet, build_features, demographic_keys, user_feature_rows

PERSONAL, SIDE_FEATURES, POPULARITY = "personal", "side_features", "popularity"
MODEL_FORMAT = 1
# Up to this many users a request is ranked on the calling thread (online serving); larger
# batches spread users over the cores.
FEW_USERS = 16


@dataclass
class Recommendations:
    """Top-K answers for a batch of users."""

    user_ids: np.ndarray
    movie_ids: np.ndarray  # (users, k), -1 where fewer than k movies are left
    scores: np.ndarray  # (users, k)
    paths: list

    def to_records(self, titles: dict | None = None) -> list:
        """One JSON-ready dict per user: movie ids, scores (6 decimals), titles, path."""
        records = []
        all_movies = self.movie_ids.tolist()
        if len(self.user_ids) <= FEW_USERS:  # Python's round beats numpy's call overhead on a few values
            all_scores = [[round(value, 6) for value in row] for row in self.scores.tolist()]
        else:
            all_scores = np.round(self.scores.astype(np.float64), 6).tolist()
        for row, user_id in enumerate(self.user_ids.tolist()):
            movies, scores = all_movies[row], all_scores[row]
            if -1 in movies:  # fewer than k movies were left (-1 pads)
                keep = [i for i, m in enumerate(movies) if m >= 0]
                movies, scores = [movies[i] for i in keep], [scores[i] for i in keep]
            record = {"user_id": user_id, "movie_ids": movies, "scores": scores, "path": self.paths[row]}
            if titles is not None:
                record["titles"] = [titles.get(m, "") for m in movies]
            records.append(record)
        return records


def regularized_biases(users, movies, ratings, n_users, n_movies, user_reg=15.0, movie_reg=10.0, iterations=10):
    """Global mean and user/movie biases by alternating least squares (Koren's baseline)."""
    mean = float(ratings.mean()) if len(ratings) else 3.0
    user_bias = np.zeros(n_users)
    movie_bias = np.zeros(n_movies)
    user_count = np.bincount(users, minlength=n_users)
    movie_count = np.bincount(movies, minlength=n_movies)
    for _ in range(iterations):
        residual = ratings - mean - user_bias[users]
        movie_bias = np.bincount(movies, residual, minlength=n_movies) / (movie_count + movie_reg)
        residual = ratings - mean - movie_bias[movies]
        user_bias = np.bincount(users, residual, minlength=n_users) / (user_count + user_reg)
    return mean, user_bias, movie_bias


class EstimatorParams:
    """The scikit-learn estimator protocol: parameters are the ``__init__`` arguments."""

    @classmethod
    def _get_param_names(cls) -> list:
        if cls.__init__ is object.__init__:
            return []
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))

    def get_params(self, deep: bool = True) -> dict:
        """The estimator's parameters (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters (scikit-learn protocol); unknown names raise ValueError."""
        valid = set(self._get_param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {', '.join(sorted(valid))}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({shown})"


class Recommender(EstimatorParams):
    """Base class: id maps, biases, popularity, side features, save/load, the answer paths.

    Subclasses implement ``_fit_core``, ``_predict_known`` and optionally ``_rank_known``,
    ``_state`` and ``_restore``.
    """

    algorithm = "base"
    side_shrinkage = 20.0

    # ------------------------------------------------------------------ fitting

    def fit(self, X: pd.DataFrame, y=None, users: pd.DataFrame | None = None, movies: pd.DataFrame | None = None,
            progress: bool = False, features: FeatureSet | None = None):
        """Fit on ratings.

        Args:
            X: ratings with ``user_id, movie_id`` (and ``rating`` unless ``y`` is given).
            y: ratings, when not a column of ``X`` (the scikit-learn convention).
            users: demographics (user_id, age, gender, occupation, zip), for the side features.
            movies: the catalogue (movie_id, title, year, genres); every movie in it can be
                recommended, rated or not.
            progress: show a progress bar with epochs and loss (models that iterate).
            features: user and movie features already built from these ratings (the
                pipeline's features step); built here when not given.
        """
        ratings = X if y is None else X.assign(rating=np.asarray(y))
        users = users if users is not None else pd.DataFrame(columns=["user_id", "age", "gender", "occupation", "zip"])
        if movies is None:
            movies = pd.DataFrame({"movie_id": np.unique(ratings["movie_id"]), "title": "", "year": pd.NA, "genres": ""})
        self.features_ = features if features is not None else build_features(ratings, users, movies)
        self.user_ids_ = self.features_.users["user_id"].to_numpy(np.int64)
        self.movie_ids_ = self.features_.movies["movie_id"].to_numpy(np.int64)
        missing = np.setdiff1d(ratings["movie_id"].to_numpy(), self.movie_ids_)
        if len(missing):
            raise ValueError(f"{len(missing)} rated movie ids are not in the catalogue (first: {missing[0]})")
        self.titles_ = dict(zip(movies["movie_id"].astype(int), movies["title"].astype(str)))
        u = self.user_index(ratings["user_id"].to_numpy())
        m = self.movie_index(ratings["movie_id"].to_numpy())
        r = ratings["rating"].to_numpy(np.float64)
        self.rating_range_ = (float(r.min()), float(r.max())) if len(r) else (1.0, 5.0)
        self.mean_, self.user_bias_, self.movie_bias_ = regularized_biases(u, m, r, len(self.user_ids_), len(self.movie_ids_))
        self.popularity_ = np.bincount(m, minlength=len(self.movie_ids_)).astype(np.float64)
        order = np.lexsort((m, u))
        self.seen_indptr_ = np.concatenate(([0], np.cumsum(np.bincount(u, minlength=len(self.user_ids_)))))
        self.seen_items_ = m[order].astype(np.int32)
        self._fit_side_features(u, m, r)
        self._fit_core(u, m, r, progress=progress)
        self.fitted_at_ = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return self

    def _fit_core(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, progress: bool = False) -> None:
        """Fit the model itself on indexes; biases and popularity are already there."""

    def _fit_side_features(self, users, movies, ratings) -> None:
        """Per demographic value: how much more often its users rate each movie (log lift),
        and how differently they rate it (shrunken mean residual)."""
        keys = demographic_keys(self.features_.users)
        vocabulary = sorted({key for row in keys for key in row if not key.endswith("=unknown")})
        self.side_vocabulary_ = vocabulary
        position = {key: i for i, key in enumerate(vocabulary)}
        n_users, n_movies, n_keys = len(self.user_ids_), len(self.movie_ids_), len(vocabulary)
        membership = np.zeros((n_users, n_keys), dtype=np.float64)
        for row, user_keys in enumerate(keys):
            for key in user_keys:
                if key in position:
                    membership[row, position[key]] = 1.0
        rated = sparse.csr_matrix((np.ones(len(users)), (users, movies)), shape=(n_users, n_movies))
        residual = sparse.csr_matrix((ratings - self.mean_ - self.movie_bias_[movies], (users, movies)), shape=(n_users, n_movies))
        key_users = membership.sum(axis=0)
        counts = np.asarray((rated.T @ membership).T)  # (keys, movies): users of each value who rated each movie
        share_all = (self.popularity_ + 1.0) / (n_users + 2.0)
        share_key = (counts + self.side_shrinkage * share_all) / (key_users[:, None] + self.side_shrinkage)
        self.side_lift_ = np.log(share_key / share_all).astype(np.float32)
        self.side_residual_ = (np.asarray((residual.T @ membership).T) / (counts + self.side_shrinkage)).astype(np.float32)

    # ------------------------------------------------------------------ indexes

    def user_index(self, user_ids) -> np.ndarray:
        """Index of each user id, -1 for users the model has not seen."""
        return _lookup(self.user_ids_, user_ids)

    def personal_index(self, user_ids) -> np.ndarray:
        """Index of each user with training ratings, -1 otherwise.

        A user the model knows only by demographics (in the users table, no ratings) is
        a new user: it is served by the side features, not by an empty history.
        """
        index = self.user_index(user_ids)
        history = self._has_history()
        return np.where((index >= 0) & history[np.maximum(index, 0)], index, -1)

    def _has_history(self) -> np.ndarray:
        """Whether each known user has training ratings (built once: recomputing it per
        request costs as much as the lookup)."""
        history = self.__dict__.get("_has_history_cache")
        if history is None:
            history = self.__dict__["_has_history_cache"] = np.diff(self.seen_indptr_) > 0
        return history

    def _personal_position(self, user_id: int) -> int:
        """:meth:`personal_index` of one id in plain Python: an online request's lookup,
        without the half-dozen numpy calls (each a microsecond or more) of the array path."""
        position = _position(self.user_ids_, user_id)
        return position if position >= 0 and self._has_history()[position] else -1

    def movie_index(self, movie_ids) -> np.ndarray:
        """Index of each movie id, -1 for movies not in the catalogue."""
        return _lookup(self.movie_ids_, movie_ids)

    # ------------------------------------------------------------------ ratings

    def _predict_known(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        return self.mean_ + self.user_bias_[users] + self.movie_bias_[movies]

    def predict_ratings(self, user_ids, movie_ids, demographics: pd.DataFrame | None = None) -> tuple:
        """Predicted ratings of (user, movie) pairs and the path that served each.

        Args:
            user_ids, movie_ids: equal-length sequences of ids.
            demographics: optional rows (user_id, age, gender, occupation) describing users
                the model has not seen; they are served by the side features.

        Returns:
            ``(ratings, paths)``: clipped to the rating scale; paths per pair.
        """
        u = self.personal_index(user_ids)
        m = self.movie_index(movie_ids)
        scores = np.full(len(u), self.mean_)
        paths = np.full(len(u), POPULARITY, dtype=object)
        known = (u >= 0) & (m >= 0)
        if known.any():
            scores[known] = self._predict_known(u[known], m[known])
            paths[known] = PERSONAL
        movie_only = (u < 0) & (m >= 0)
        if movie_only.any():
            scores[movie_only] = self.mean_ + self.movie_bias_[m[movie_only]]
            side = self._side_rows(np.asarray(user_ids)[movie_only], demographics)
            if side is not None:
                described, membership = side
                rows = np.flatnonzero(movie_only)[described]
                chosen = membership[described]
                scores[rows] += (chosen * self.side_residual_[:, m[rows]].T).sum(axis=1) / np.maximum(chosen.sum(axis=1), 1.0)
                paths[rows] = SIDE_FEATURES
        user_only = (u >= 0) & (m < 0)
        scores[user_only] = self.mean_ + self.user_bias_[u[user_only]]
        low, high = self.rating_range_
        return np.clip(scores, low, high), paths.tolist()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """scikit-learn style: predicted ratings for the rows of a (user_id, movie_id) frame."""
        return self.predict_ratings(X["user_id"].to_numpy(), X["movie_id"].to_numpy())[0]

    def score(self, X: pd.DataFrame, y=None) -> float:
        """R² of the predicted ratings (what scikit-learn regressors report)."""
        actual = np.asarray(X["rating"] if y is None else y, dtype=float)
        residual = ((actual - self.predict(X)) ** 2).sum()
        total = ((actual - actual.mean()) ** 2).sum()
        return float(1.0 - residual / total) if total else 0.0

    # ------------------------------------------------------------------ ranking

    def _rank_known(self, users: np.ndarray, parallel: bool = False) -> np.ndarray:
        """Scores of every movie for known users (higher is better): rating models rank by rating.

        ``parallel`` lets a model spread the users over the cores (see :meth:`recommend`).
        """
        return self.mean_ + self.user_bias_[users][:, None] + self.movie_bias_[None, :]

    def _side_rows(self, user_ids, demographics: pd.DataFrame | None):
        """Membership rows of described users: (mask of users described, membership matrix).

        A description comes from ``demographics`` when given for the user, else from the
        demographics the model was trained with (users who registered but never rated).
        """
        ids = np.asarray(user_ids)
        stored = self._stored_demographics()
        if demographics is not None and len(demographics):
            given = demographics[[c for c in ("user_id", "age", "gender", "occupation") if c in demographics]]
            given = given[given["user_id"].isin(ids)].drop_duplicates("user_id", keep="last").set_index("user_id")
            table = pd.concat([stored[~stored.index.isin(given.index)], given])
        else:
            table = stored
        present = np.isin(ids, table.index.to_numpy())
        if not present.any():
            return None
        rows = table.reindex(ids)
        features = user_feature_rows(ids, rows.get("age"), rows.get("gender"), rows.get("occupation"))
        position = {key: i for i, key in enumerate(self.side_vocabulary_)}
        membership = np.zeros((len(ids), len(self.side_vocabulary_)), dtype=np.float32)
        for row, keys in enumerate(demographic_keys(features)):
            for key in keys:
                if key in position:
                    membership[row, position[key]] = 1.0
        described = present & (membership.sum(axis=1) > 0)
        return described, membership

    def _stored_demographics(self) -> pd.DataFrame:
        """Demographics the model was trained with, indexed by user (built once per model)."""
        cached = self.__dict__.get("_stored_demographics_cache")
        if cached is None:
            stored = self.features_.users[["user_id", "age", "gender", "occupation"]]
            stored = stored[(stored["gender"] != "unknown") | (stored["occupation"] != "unknown") | stored["age"].notna()]
            cached = stored.drop_duplicates("user_id", keep="last").set_index("user_id")
            self.__dict__["_stored_demographics_cache"] = cached
        return cached

    def recommend(self, user_ids, k: int = 10, exclude_rated: bool = True,
                  demographics: pd.DataFrame | None = None, parallel: bool | None = None) -> Recommendations:
        """Top-K movies for each user over the full catalogue.

        Args:
            user_ids: the users.
            k: how many movies each.
            exclude_rated: leave out movies the user rated in training.
            demographics: rows describing users the model has not seen (side-feature path).
            parallel: spread the users over the cores; by default when there are more
                than ``FEW_USERS``. A server passes False: it shares the cores with its
                HTTP loop and the clients, and a request fanned out over them waits for
                the busiest one (measured: a 100-user request took 5 ms on one thread
                and 9 to 14 ms on two in the server, against 2 ms on an idle machine).
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        ids = np.asarray(user_ids, dtype=np.int64)
        if len(ids) == 1:  # an online request: plain Python where numpy's per-call cost dominates
            position = self._personal_position(int(ids[0]))
            u, all_known = np.array([position]), position >= 0
        else:
            u = self.personal_index(ids)
            all_known = bool((u >= 0).all())
        k = int(min(k, len(self.movie_ids_)))
        parallel = len(ids) > FEW_USERS if parallel is None else parallel
        if all_known:  # the usual online case: no copy through a boolean index
            table = self.__dict__.get("_known_scores_table")
            if table is not None:
                scores = table[u]
            else:
                scores = self._rank_known(u, parallel).astype(np.float32, copy=False)
            paths = [PERSONAL] * len(ids)
        else:
            scores, paths = self._rank_mixed(ids, u, u >= 0, demographics, parallel)
        kernels = ranking_kernels()
        excluded_of = u if exclude_rated else np.full(len(u), -1)
        top = np.empty((len(ids), k), dtype=np.int64)
        top_scores = np.empty((len(ids), k), dtype=np.float32)
        select = kernels.top_k_rows_parallel if parallel else kernels.top_k_rows
        short = select(scores, self.seen_indptr_, self.seen_items_, excluded_of, k, top, top_scores)
        movie_ids = self.movie_ids_[top]
        if short:  # fewer than k movies were left for some users: their tails are excluded ones
            left = np.isfinite(top_scores)
            movie_ids, top_scores = np.where(left, movie_ids, -1), np.where(left, top_scores, np.nan)
        return Recommendations(ids, movie_ids, top_scores, paths)

    def _rank_mixed(self, ids, u, known, demographics, parallel: bool) -> tuple:
        """Scores and paths when some users are new: side features or popularity serve them."""
        scores = np.empty((len(ids), len(self.movie_ids_)), dtype=np.float32)
        paths = np.full(len(ids), POPULARITY, dtype=object)
        if known.any():
            scores[known] = self._rank_known(u[known], parallel)
            paths[known] = PERSONAL
        unknown = ~known
        if unknown.any():
            base = np.log(self.popularity_ + 1.0).astype(np.float32)
            scores[unknown] = base[None, :]
            side = self._side_rows(ids[unknown], demographics)
            if side is not None:
                described, membership = side
                rows = np.flatnonzero(unknown)[described]
                scores[rows] = base[None, :] + membership[described] @ self.side_lift_
                paths[rows] = SIDE_FEATURES
        return scores, paths.tolist()

    def keep_known_scores(self, max_bytes: int = 256 << 20) -> bool:
        """Score every known user once and keep the table, when it fits in ``max_bytes``.

        For a server: a request for a known user then reads one row of the table instead
        of scoring (for EASE, summing a weight row per rated movie, about 0.7 MB of reads
        per ml-100k user with cold caches). The scores are the ones ``_rank_known`` gives:
        identical for EASE; for the factor models one matrix product for all users may
        differ from a per-user product in the last float bit. ml-100k: 943 x 1,682 floats,
        6 MB.

        Returns:
            Whether the table is kept.
        """
        size = len(self.user_ids_) * len(self.movie_ids_) * 4
        if size == 0 or size > max_bytes:
            return False
        users = np.arange(len(self.user_ids_))
        self.__dict__["_known_scores_table"] = np.ascontiguousarray(
            self._rank_known(users, parallel=True).astype(np.float32, copy=False))
        return True

    def warm_up(self) -> None:
        """Compile the ranking kernels (or load them from numba's cache) and touch the
        model's arrays, for one user and for a batch, before the first request."""
        users = self.user_ids_[: FEW_USERS + 1]
        self.recommend(users[:1], k=1)
        self.recommend(users, k=1, parallel=True)

    def seen_movies(self, user_id) -> np.ndarray:
        """Movie ids the user rated in training (empty for unknown users)."""
        user = self.user_index([user_id])[0]
        if user < 0:
            return np.array([], dtype=np.int64)
        return self.movie_ids_[self.seen_items_[self.seen_indptr_[user]: self.seen_indptr_[user + 1]]]

    # ------------------------------------------------------------------ persistence

    def _state(self) -> dict:
        """Model-specific arrays to save (besides the shared ones)."""
        return {}

    def _restore(self, arrays: dict) -> None:
        """Set model-specific attributes from saved arrays."""

    def save(self, folder: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Write the model directory: model.json, arrays.npz, feature tables, titles."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shared = {
            "user_ids": self.user_ids_, "movie_ids": self.movie_ids_, "user_bias": self.user_bias_,
            "movie_bias": self.movie_bias_, "popularity": self.popularity_, "seen_indptr": self.seen_indptr_,
            "seen_items": self.seen_items_, "side_lift": self.side_lift_, "side_residual": self.side_residual_,
        }
        arrays = {**shared, **{f"model__{k}": v for k, v in self._state().items()}}
        np.savez(folder / "arrays.npz", **arrays)
        self.features_.save(folder)
        pd.DataFrame({"movie_id": list(self.titles_), "title": list(self.titles_.values())}).to_parquet(
            folder / "titles.parquet", index=False)
        description = {
            "format": MODEL_FORMAT,
            "algorithm": self.algorithm,
            "parameters": {k: _plain(v) for k, v in self.get_params().items()},
            "global_mean": self.mean_,
            "rating_range": list(self.rating_range_),
            "side_vocabulary": self.side_vocabulary_,
            "feature_schema": self.features_.schema(),
            "n_users": int(len(self.user_ids_)),
            "n_movies": int(len(self.movie_ids_)),
            "fitted_at": self.fitted_at_,
            **buildinfo.describe(),
            **(metadata or {}),
        }
        (folder / "model.json").write_text(json.dumps(description, indent=2, sort_keys=True, default=_plain))
        return folder


def ranking_kernels():
    """The compiled ranking kernels (numba is imported on first use, not with the models)."""
    global _KERNELS
    if _KERNELS is None:
        from reelops.models import _kernels

        _KERNELS = _kernels
    return _KERNELS


_KERNELS = None


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    return value


def _position(sorted_ids: np.ndarray, value: int) -> int:
    """Index of one id in a sorted id array, -1 if absent (plain Python, no array calls)."""
    position = int(sorted_ids.searchsorted(value))
    return position if position < len(sorted_ids) and int(sorted_ids[position]) == value else -1


def _lookup(sorted_ids: np.ndarray, ids) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    if len(ids) == 1:  # one id (an online request): one scalar search instead of five array calls
        return np.array([_position(sorted_ids, int(ids[0]))], dtype=np.int64)
    position = np.searchsorted(sorted_ids, ids)
    position = np.minimum(position, len(sorted_ids) - 1)
    return np.where(sorted_ids[position] == ids, position, -1)


def model_content_hash(folder: str | os.PathLike) -> str:
    """SHA-256 of what a model is: ``model.json``, its arrays and the tables ``load_model`` reads.

    Reports, the blessing and the registration record are left out, so a blessing can name
    the model it blesses and registration can recognise a model it has seen.

    Raises:
        FileNotFoundError: the folder holds no model.json or arrays.npz.
    """
    folder = Path(folder)
    names = ["model.json", "arrays.npz"] + sorted(path.name for path in folder.glob("*.parquet"))
    digest = hashlib.sha256(b"reelops-model-content-1")
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: not a complete model directory (no {name})")
        digest.update(f"\x1e{name}\x1f".encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_model(folder: str | os.PathLike) -> Recommender:
    """Load a model directory written by :meth:`Recommender.save`.

    Raises:
        FileNotFoundError: the folder holds no model.json.
        ValueError: the algorithm or format is unknown.
    """
    from reelops.models import algorithm_class

    folder = Path(folder)
    if not (folder / "model.json").is_file():
        raise FileNotFoundError(f"{folder}: not a model directory (no model.json)")
    description = json.loads((folder / "model.json").read_text())
    if description.get("format") != MODEL_FORMAT:
        raise ValueError(f"{folder}: model format {description.get('format')} is not supported (expected {MODEL_FORMAT})")
    cls = algorithm_class(description["algorithm"])
    model = cls(**{k: v for k, v in description["parameters"].items() if k in cls._get_param_names()})
    with np.load(folder / "arrays.npz") as arrays:
        data = {name: arrays[name] for name in arrays.files}
    model.user_ids_, model.movie_ids_ = data["user_ids"], data["movie_ids"]
    model.user_bias_, model.movie_bias_ = data["user_bias"], data["movie_bias"]
    model.popularity_, model.seen_indptr_, model.seen_items_ = data["popularity"], data["seen_indptr"], data["seen_items"]
    model.side_lift_, model.side_residual_ = data["side_lift"], data["side_residual"]
    model.mean_ = description["global_mean"]
    model.rating_range_ = tuple(description["rating_range"])
    model.side_vocabulary_ = description["side_vocabulary"]
    model.fitted_at_ = description["fitted_at"]
    model.features_ = FeatureSet.load(folder)
    titles = pd.read_parquet(folder / "titles.parquet")
    model.titles_ = dict(zip(titles["movie_id"].astype(int), titles["title"].astype(str)))
    model._restore({name[len("model__"):]: value for name, value in data.items() if name.startswith("model__")})
    model.metadata_ = description
    return model
