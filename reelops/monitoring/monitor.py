"""The monitor of one model version: its detectors, their reference, a window's findings.

Built at training time, saved with the model version (``MODEL_DIR/monitoring/``), and fed
windows of production data; see :mod:`reelops.monitoring` for what each detector tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from reelops.data.layouts import GENRES
from reelops.monitoring.backend import DEFAULT_BACKEND, DriftBackend
from reelops.monitoring.statistics import cluster_t_test, within_user, within_user_genre_test
from reelops.monitoring.windows import (REQUIRED_COLUMNS, WINDOW_SIZE, category_codes, primary_genre, sample_per_user,
                                        time_windows)

# "unjudged": no detector could judge the window (e.g. no judgeable rows at all): not "none".
VERDICTS = ("none", "data", "concept", "both", "unjudged")
# Every detector of a window, in the order they are reported.
DETECTORS = ("user_data_drift", "movie_data_drift", "prediction_drift", "model_drift")
_POPULARITY_BANDS = 5


class MonitoringInputError(ValueError):
    """A window cannot be judged at all (e.g. required columns are missing)."""


@dataclass
class DetectorResult:
    """One detector's finding on one window."""

    name: str
    drift: bool
    p_values: dict
    threshold: float
    rows: int
    unjudged: dict = field(default_factory=dict)
    available: bool = True
    note: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "drift": self.drift, "available": self.available, "threshold": self.threshold,
                "rows": self.rows, "p_values": {k: float(v) for k, v in self.p_values.items()},
                "unjudged": self.unjudged, "note": self.note}


@dataclass
class Findings:
    """Every detector's result on a window and the verdict."""

    detectors: dict
    verdict: str
    window_rows: int
    start_timestamp: int | None
    end_timestamp: int | None
    dropped_rows: dict

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "window_rows": self.window_rows, "start_timestamp": self.start_timestamp,
                "end_timestamp": self.end_timestamp, "dropped_rows": self.dropped_rows,
                "detectors": {name: result.to_dict() for name, result in self.detectors.items()}}


class Monitor:
    """Drift detectors of one model version, with their reference.

    Args:
        model: the fitted model whose inputs, predictions and errors are watched.
        backend: the drift-test library (Alibi Detect by default).
        p_value: family-wise level of each detector (per window).
        pairs_per_user: ratings per user per window used by the movie and prediction tests.
    """

    def __init__(self, model, backend: DriftBackend = DEFAULT_BACKEND, p_value: float = 0.002, pairs_per_user: int = 2,
                 window_size: int = WINDOW_SIZE):
        self.model = model
        self.backend = backend
        self.p_value = p_value
        self.pairs_per_user = pairs_per_user
        self.window_size = window_size
        self.detectors: dict = {}
        self.reference: dict = {}

    # ------------------------------------------------------------------ reference

    def build(self, train_rows: pd.DataFrame, heldout_rows: pd.DataFrame, users: pd.DataFrame,
              movies: pd.DataFrame) -> "Monitor":
        """Build every reference: inputs from training rows, errors from held-out rows."""
        users = users if users is not None else pd.DataFrame(columns=["user_id", "age", "gender", "occupation"])
        occupations = sorted(set(users["occupation"].dropna().astype(str))) if len(users) else []
        popularity = pd.Series(self.model.popularity_, index=self.model.movie_ids_)
        rated_popularity = popularity.reindex(train_rows["movie_id"]).to_numpy()
        edges = np.unique(np.quantile(rated_popularity, np.linspace(0, 1, _POPULARITY_BANDS + 1)[1:-1]))
        self.reference = {"occupations": occupations, "genders": ["F", "M"], "popularity_edges": edges.tolist(),
                          "p_value": self.p_value, "pairs_per_user": self.pairs_per_user, "window_size": self.window_size}
        windows = time_windows(train_rows, self.window_size) or [train_rows]
        user_rows = [self._user_features(w, users)[0] for w in windows]
        movie_rows = [self._movie_features(w, movies, seed=i)[0] for i, w in enumerate(windows)]
        self.reference["categories"] = {}
        if occupations and sum(len(r) for r in user_rows):
            self._build_tabular("user_data_drift", user_rows, {2: range(2), 3: range(len(occupations))})
        self._build_tabular("movie_data_drift", movie_rows, {1: range(1, len(GENRES)), 2: range(len(edges) + 1)})
        # On the log scale: the share is a maximum, skewed to the right; a normal z-test
        # on the raw share alarmed in 2.8% of unchanged windows at p < 0.001, on its log
        # in 0.5% (8 seeds), and a popularity shock still scores z > 4.
        log_concentration = np.log([self._concentration(w) for w in windows])
        self.reference["concentration"] = {
            "log_mean": float(log_concentration.mean()),
            "log_sd": float(log_concentration.std(ddof=1)) if len(log_concentration) > 1 else 0.0,
            "windows": len(log_concentration)}
        # Predictions and errors: on held-out rows, which the model did not see in training.
        # The popularity of what is asked about: from training windows, which hold users at
        # every stage (newcomers ask about more popular titles than old hands).
        popularity_rows = [self._prediction_features(w, seed=i)[1] for i, w in enumerate(windows)]
        self.detectors["asked_popularity"] = self.backend.tabular(np.vstack(popularity_rows), {}, self.p_value / 4)
        if len(heldout_rows):
            rating_rows = [self._prediction_features(w, seed=i)[0]
                           for i, w in enumerate(time_windows(heldout_rows, self.window_size) or [heldout_rows])]
            self.detectors["prediction_drift"] = self.backend.tabular(np.vstack(rating_rows), {}, self.p_value / 4)
            # Only the personal path is judged: a reference for the side-feature path (held-out
            # users served as if new) proved optimistic, because those users' own training
            # rows shaped the side features, and it alarmed in an unchanged world.
            errors, flags = self._errors(heldout_rows)
            self.reference["errors"] = {"personal": self._error_reference(errors, flags)}
        return self

    def _build_tabular(self, name: str, window_rows: list, categorical: dict) -> None:
        """A TabularDrift detector whose categories a window can fill.

        A chi-square on cells with an expected count near zero alarms far more often than
        its level says, and a window holds only a few dozen users. So categories whose
        expected count in a typical window is under 5 share one bucket; a value outside
        the vocabulary (never seen in training) is counted as unjudged, not tested.

        Args:
            window_rows: the reference rows of each training window.
            categorical: ``{column: vocabulary codes}`` of the categorical columns.
        """
        rows = np.vstack(window_rows)
        typical = float(np.median([len(r) for r in window_rows])) if window_rows else float(len(rows))
        groups = {}
        for column, vocabulary in categorical.items():
            values, counts = np.unique(rows[:, column], return_counts=True)
            kept = [float(v) for v, c in zip(values, counts) if c / len(rows) * typical >= 5]
            # The shared bucket exists only when the reference has members in it (a cell
            # empty in both reference and window breaks the chi-square).
            rare = len(kept) < len(values)
            groups[str(column)] = {"kept": kept, "rare": rare, "vocabulary": [float(v) for v in vocabulary]}
        self.reference["categories"][name] = groups
        encoded, _ = self._encode(name, rows)
        self.detectors[name] = self.backend.tabular(
            encoded, {int(c): len(g["kept"]) + int(g["rare"]) for c, g in groups.items()}, self.p_value)

    def _encode(self, name: str, rows: np.ndarray) -> tuple:
        """Map categorical columns to bucket codes; rows with values outside the vocabulary are dropped."""
        rows = rows.copy()
        keep = np.ones(len(rows), dtype=bool)
        for column, group in self.reference["categories"].get(name, {}).items():
            column = int(column)
            lookup = {value: code for code, value in enumerate(group["kept"])}
            rare = len(group["kept"])
            vocabulary = set(group["vocabulary"]) if group["rare"] else set()
            codes = np.array([lookup.get(value, rare if value in vocabulary else -1) for value in rows[:, column].tolist()])
            rows[:, column] = codes
            keep &= codes >= 0
        return rows[keep], int((~keep).sum())

    # ------------------------------------------------------------------ features of a window

    def _user_features(self, window: pd.DataFrame, users: pd.DataFrame) -> tuple:
        """(rows, unjudged counts): one row per distinct user: age, log activity, gender, occupation."""
        counts = window.groupby("user_id").size()
        unjudged = {}
        if users is None or len(users) == 0:
            return np.zeros((0, 4)), {"users_without_demographics": int(len(counts))}
        table = self._cached("users", users, lambda u: u.drop_duplicates("user_id").set_index("user_id")).reindex(counts.index)
        missing = table["gender"].isna() & table["occupation"].isna() & table["age"].isna()
        ages = pd.to_numeric(table["age"], errors="coerce").to_numpy(float)
        genders = category_codes(table["gender"].tolist(), self.reference["genders"])
        occupations = category_codes(table["occupation"].tolist(), self.reference["occupations"])
        rows = np.column_stack([ages, np.log1p(counts.to_numpy(float)), genders, occupations])
        ok = ~missing.to_numpy() & np.isfinite(ages) & (genders >= 0) & (occupations >= 0)
        if missing.any():
            unjudged["users_without_demographics"] = int(missing.sum())
        if (~np.isfinite(ages) & ~missing.to_numpy()).any():
            unjudged["missing_age"] = int((~np.isfinite(ages) & ~missing.to_numpy()).sum())
        unknown = ((genders < 0) | (occupations < 0)) & ~missing.to_numpy()
        if unknown.any():
            unjudged["unknown_category"] = int(unknown.sum())
        return rows[ok], unjudged

    def _cached(self, key: str, source, build):
        """Tables derived from the catalogue or the users, built once per source object
        (a monitor checks window after window against the same catalogue)."""
        cache = self.__dict__.setdefault("_cache", {})
        entry = cache.get(key)
        if entry is None or entry[0] is not source:
            entry = (source, build(source))
            cache[key] = entry
        return entry[1]

    def _movie_table(self, movies: pd.DataFrame) -> pd.DataFrame:
        return self._cached("movies", movies, self._build_movie_table)

    def _build_movie_table(self, movies: pd.DataFrame) -> pd.DataFrame:
        """Year, primary genre and training popularity of every movie (new ones included)."""
        from reelops.features import genre_matrix

        catalogue = movies.drop_duplicates("movie_id").set_index("movie_id")
        popularity = pd.Series(self.model.popularity_, index=self.model.movie_ids_).reindex(catalogue.index).fillna(0.0)
        return pd.DataFrame({
            "year": pd.to_numeric(catalogue["year"], errors="coerce").astype(float).to_numpy(),
            "genre": primary_genre(genre_matrix(catalogue["genres"])),
            "popularity": popularity.to_numpy(),
        }, index=catalogue.index)

    def _movie_features(self, window: pd.DataFrame, movies: pd.DataFrame, seed: int) -> tuple:
        sample = sample_per_user(window, self.pairs_per_user, seed)
        table = self._movie_table(movies).reindex(sample["movie_id"])
        band = np.searchsorted(np.asarray(self.reference["popularity_edges"]), table["popularity"].to_numpy(), side="right")
        rows = np.column_stack([table["year"].to_numpy(), table["genre"].to_numpy(), band])
        unknown_movie = table["popularity"].isna().to_numpy()
        ok = np.isfinite(rows[:, 0]) & (rows[:, 1] >= 0) & ~unknown_movie
        unjudged = {}
        if unknown_movie.any():
            unjudged["movies_not_in_catalogue"] = int(unknown_movie.sum())
        if (~np.isfinite(rows[:, 0]) & ~unknown_movie).any():
            unjudged["missing_year"] = int((~np.isfinite(rows[:, 0]) & ~unknown_movie).sum())
        return rows[ok].astype(float), unjudged

    def _prediction_features(self, window: pd.DataFrame, seed: int) -> tuple:
        """What the model is asked and answers, per user: ``(ratings, popularity, unjudged)``.

        ``ratings``: one predicted rating per known user (a personal-path pair when it has
        one, else the model's fallback for a movie new to it, mean + user bias); one per
        user because a user's predictions share its bias (counting them all would make
        every window look drifted). Users the model has never seen are not judged here:
        newcomers arrive all the time. ``popularity``: the mean log training popularity of
        up to ``pairs_per_user`` movies each user (known or new) asks about, 0 for a movie
        new to the model; the request, not the user, decides it, so every user counts.
        """
        sample = sample_per_user(window, self.pairs_per_user, seed)
        user_ids, movie_ids = sample["user_id"].to_numpy(), sample["movie_id"].to_numpy()
        known = self.model.personal_index(user_ids) >= 0
        movies = self.model.movie_index(movie_ids)
        personal = known & (movies >= 0)
        predicted = np.full(len(sample), np.nan)
        predicted[known] = self.model.predict_ratings(user_ids[known], movie_ids[known])[0]
        popularity = np.where(movies >= 0, self.model.popularity_[np.maximum(movies, 0)], 0.0)
        _, user = np.unique(user_ids, return_inverse=True)
        n_users = user.max() + 1 if len(user) else 0
        log_popularity = np.bincount(user, np.log1p(popularity), n_users) / np.bincount(user, minlength=n_users)
        first_prediction = np.full(n_users, np.nan)
        # Reversed assignment: the first pair written last wins; personal pairs after the others.
        for rows in (np.flatnonzero(known & ~personal), np.flatnonzero(personal)):
            first_prediction[user[rows][::-1]] = predicted[rows][::-1]
        cold = ~np.isfinite(first_prediction)
        return (first_prediction[~cold][:, None], log_popularity[:, None],
                {"users_new_to_the_model": int(cold.sum())} if cold.any() else {})

    def _concentration(self, window: pd.DataFrame) -> float:
        """The largest share of the window's users who rated one and the same movie."""
        users = window["user_id"].nunique()
        if users == 0:
            return 0.0
        return float(window.drop_duplicates(["user_id", "movie_id"]).groupby("movie_id").size().max() / users)

    def _errors(self, rows: pd.DataFrame) -> tuple:
        """Signed errors (rating - prediction) of the rows the personal path serves (user and
        movie known to the model), with their user, and the genre flags of each row's movie
        (a movie counts for every genre it has).

        Only the personal path has a reference (see :meth:`build`), so the others are not
        predicted at all: the side-feature path costs more than the rest of a window's checks.
        """
        user_ids, movie_ids = rows["user_id"].to_numpy(), rows["movie_id"].to_numpy()
        served = (self.model.personal_index(user_ids) >= 0) & (self.model.movie_index(movie_ids) >= 0)
        predicted = self.model.predict_ratings(user_ids[served], movie_ids[served])[0]
        flags = self._cached("genre_flags", self.model.features_.movies, lambda table: pd.DataFrame(
            table[[f"genre_{g}" for g in GENRES]].to_numpy() > 0, index=table["movie_id"].to_numpy()))
        genre_flags = flags.reindex(movie_ids[served], fill_value=False).to_numpy(bool)
        errors = pd.DataFrame({"user_id": user_ids[served], "error": rows["rating"].to_numpy(float)[served] - predicted})
        return errors, genre_flags

    @staticmethod
    def _error_reference(errors: pd.DataFrame, flags: np.ndarray) -> dict:
        residual, genres, _, _ = within_user(errors["error"].to_numpy(float), flags, errors["user_id"].to_numpy())
        # How a user's errors already lean by genre on held-out rows (the model is not
        # perfect): the window's test measures the change from this, not from zero.
        genre_lean = np.linalg.lstsq(genres, residual, rcond=None)[0] if len(residual) else np.zeros(genres.shape[1])
        return {"mean_abs": float(np.abs(errors["error"]).mean()),
                "within_user_genre_lean": dict(zip(GENRES[1:], map(float, genre_lean))),
                "rows": int(len(errors))}

    # ------------------------------------------------------------------ checking

    def check(self, window: pd.DataFrame, users: pd.DataFrame | None = None, movies: pd.DataFrame | None = None,
              seed: int = 0) -> Findings:
        """Run every detector on one window of production data.

        Args:
            window: ratings (user_id, movie_id, rating, timestamp); rating may be NaN when
                labels have not arrived (model drift is then not available).
            users: demographics of the users (new users included).
            movies: the catalogue (new releases included); the model's catalogue by default.
            seed: for the per-user sampling (e.g. the window's index).

        Raises:
            MonitoringInputError: required columns are missing.
        """
        missing = [c for c in ("user_id", "movie_id", "timestamp") if c not in window.columns]
        if missing:
            raise MonitoringInputError(f"window is missing column(s) {', '.join(missing)}; "
                                       f"expected {', '.join(REQUIRED_COLUMNS)}")
        if movies is None:
            movies = self._model_catalogue()
        dropped = {}
        ids = window[["user_id", "movie_id"]].apply(pd.to_numeric, errors="coerce")
        bad_ids = ids.isna().any(axis=1).to_numpy()
        if bad_ids.any():
            dropped["missing_or_bad_ids"] = int(bad_ids.sum())
        window = window[~bad_ids].astype({"user_id": np.int64, "movie_id": np.int64})
        results = {}
        user_rows, user_unjudged = self._user_features(window, users)
        results["user_data_drift"] = self._tabular("user_data_drift", user_rows, ["age", "activity", "gender", "occupation"],
                                                   user_unjudged)
        movie_rows, movie_unjudged = self._movie_features(window, movies, seed)
        results["movie_data_drift"] = self._tabular("movie_data_drift", movie_rows, ["year", "genre", "popularity_band"],
                                                    movie_unjudged)
        results["prediction_drift"] = self._prediction_drift(window, seed)
        labelled = window[pd.to_numeric(window["rating"], errors="coerce").notna()] if "rating" in window else window.iloc[:0]
        if "rating" in window and len(labelled) < len(window):
            dropped["unlabelled_rows"] = int(len(window) - len(labelled))
        results["model_drift"] = self._model_drift(labelled)
        data_side = any(results[n].drift for n in ("user_data_drift", "movie_data_drift", "prediction_drift"))
        concept_side = results["model_drift"].drift
        verdict = {(False, False): "none", (True, False): "data", (False, True): "concept", (True, True): "both"}[
            (data_side, concept_side)]
        if not any(result.available for result in results.values()):
            verdict = "unjudged"
        stamps = window["timestamp"]
        return Findings(results, verdict, int(len(window)), int(stamps.min()) if len(stamps) else None,
                        int(stamps.max()) if len(stamps) else None, dropped)

    def _model_catalogue(self) -> pd.DataFrame:
        table = self.model.features_.movies
        flags = table[[f"genre_{g}" for g in GENRES]].to_numpy() > 0
        names = np.array(GENRES, dtype=object)
        return pd.DataFrame({"movie_id": table["movie_id"], "year": table["year"],
                             "genres": ["|".join(names[row]) for row in flags]})

    def _tabular(self, name: str, rows: np.ndarray, columns: list, unjudged: dict) -> DetectorResult:
        detector = self.detectors.get(name)
        if detector is None:
            return DetectorResult(name, False, {}, self.p_value, len(rows), unjudged, available=False,
                                  note="no reference (the training data had no such features)")
        rows, unseen = self._encode(name, rows)
        if unseen:
            unjudged = {**unjudged, "category_not_in_reference": unjudged.get("category_not_in_reference", 0) + unseen}
        if len(rows) < 5:
            return DetectorResult(name, False, {}, self.p_value, len(rows), unjudged, available=False,
                                  note="fewer than 5 judgeable rows in the window")
        outcome = self.backend.predict(detector, rows)
        return DetectorResult(name, outcome["is_drift"], dict(zip(columns, outcome["p_val"])), outcome["threshold"],
                              len(rows), unjudged)

    def _prediction_drift(self, window, seed) -> DetectorResult:
        """Predicted ratings, popularity of the movies asked about, and how concentrated the
        window's activity is on one title: three tests, Bonferroni over them (p/4, p/4, p/2)."""
        ratings, popularity, unjudged = self._prediction_features(window, seed)
        result = self._tabular("prediction_drift", ratings, ["predicted_rating"], unjudged)
        asked = self._tabular("asked_popularity", popularity, ["movie_popularity"], {})
        if asked.available:
            result.p_values.update(asked.p_values)
            result.drift = result.drift or asked.drift
            result.available = True
            result.note = ""
        reference = self.reference.get("concentration")
        if asked.available and reference and reference.get("log_sd", 0) > 0:
            z = (np.log(self._concentration(window)) - reference["log_mean"]) / reference["log_sd"]
            p = float(stats.norm.sf(z))
            result.p_values["activity_concentration"] = p
            result.drift = result.drift or p < self.p_value / 2
        result.threshold = self.p_value / 4
        return result

    def _model_drift(self, labelled: pd.DataFrame) -> DetectorResult:
        reference = self.reference.get("errors")
        if reference is None:
            return DetectorResult("model_drift", False, {}, self.p_value, 0, available=False,
                                  note="no held-out errors: the model was trained with --holdout none")
        reference = reference["personal"]
        errors, flags = self._errors(labelled) if len(labelled) else (pd.DataFrame(columns=["user_id", "error"]), None)
        signed = errors["error"].to_numpy(float)
        clusters = errors["user_id"].to_numpy()
        if len(np.unique(clusters)) < 5:
            return DetectorResult("model_drift", False, {}, self.p_value, int(len(errors)), available=False,
                                  note="fewer than 5 users with labels and a personal prediction")
        p_values = {"mean_abs_error": cluster_t_test(np.abs(signed), clusters, reference["mean_abs"],
                                                      alternative="greater")}
        lean = reference.get("within_user_genre_lean")
        if lean is not None:
            p_genre = within_user_genre_test(signed, flags, clusters, np.array([lean[g] for g in GENRES[1:]]))
            if p_genre is not None:
                p_values["errors_by_genre_within_user"] = p_genre
        threshold = self.p_value / len(p_values)
        return DetectorResult("model_drift", min(p_values.values()) < threshold, p_values, threshold, int(len(errors)))

    # ------------------------------------------------------------------ persistence

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the reference (``reference.json``) and each detector (``save_detector``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, detector in self.detectors.items():
            self.backend.save(detector, folder / name)
        (folder / "reference.json").write_text(json.dumps({**self.reference, "detectors": sorted(self.detectors)},
                                                          indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, model, folder: str | os.PathLike, backend: DriftBackend = DEFAULT_BACKEND) -> "Monitor":
        """Reload a saved monitor for ``model``."""
        folder = Path(folder)
        if not (folder / "reference.json").is_file():
            raise FileNotFoundError(f"{folder}: no monitoring reference (reference.json); "
                                    "models trained before monitoring existed need retraining")
        reference = json.loads((folder / "reference.json").read_text())
        monitor = cls(model, backend, p_value=reference["p_value"], pairs_per_user=reference["pairs_per_user"],
                      window_size=reference["window_size"])
        monitor.reference = {k: v for k, v in reference.items() if k != "detectors"}
        monitor.detectors = {name: backend.load(folder / name) for name in reference["detectors"]}
        return monitor


def build_monitor(model, train_rows, heldout_rows, users, movies) -> Monitor:
    """A monitor with every reference built (what training saves next to the model)."""
    return Monitor(model).build(train_rows, heldout_rows, users, movies)


def load_monitor(model_dir: str | os.PathLike, model=None) -> Monitor:
    """The monitor saved in a model directory (``MODEL_DIR/monitoring``)."""
    from reelops.models import load_model

    model = model if model is not None else load_model(model_dir)
    return Monitor.load(model, Path(model_dir) / "monitoring")


def monitor_dataset(monitor: Monitor, ratings: pd.DataFrame, users: pd.DataFrame | None,
                    movies: pd.DataFrame | None, after_timestamp: int | None = None) -> dict:
    """Feed a dataset to a monitor as windows in time order and summarise per detector.

    Args:
        after_timestamp: only ratings after this time (the model's training data end) are
            production data; ``None`` uses every row.

    Returns:
        ``{"windows": [Findings...], "summary": {...}, "new_labels": int, "data_time": int}``.
    """
    rows = ratings if after_timestamp is None else ratings[ratings["timestamp"] > after_timestamp]
    if len(rows) < monitor.window_size and len(rows):
        windows = [rows.sort_values("timestamp", kind="stable")]
    else:
        windows = time_windows(rows, monitor.window_size)
    findings = [monitor.check(window, users, movies, seed=index) for index, window in enumerate(windows)]
    # Ratings seen up to the end of each window: a partial window holds fewer than window_size.
    seen = np.cumsum([f.window_rows for f in findings]).tolist()
    summary = {}
    for name in DETECTORS:
        results = [f.detectors[name] for f in findings]
        alarms = [i for i, r in enumerate(results) if r.drift]
        unjudged: dict = {}
        for r in results:
            for key, count in r.unjudged.items():
                unjudged[key] = unjudged.get(key, 0) + count
        summary[name] = {
            "windows": len(results), "alarms": len(alarms),
            "first_alarm_after_ratings": int(seen[alarms[0]]) if alarms else None,
            "available": any(r.available for r in results),
            "latest_p_values": results[-1].p_values if results else {},
            "unjudged": unjudged,
            "note": next((r.note for r in results if r.note), ""),
        }
    verdicts = [f.verdict for f in findings]
    summary["verdicts"] = {v: verdicts.count(v) for v in VERDICTS}
    summary["ratings"] = int(len(rows))
    summary["ratings_judged"] = int(seen[-1]) if seen else 0
    # Fewer ratings than one window: judged as one partial window, and said so.
    summary["partial_window"] = bool(0 < len(rows) < monitor.window_size)
    return {"windows": findings, "summary": summary, "new_labels": int(pd.to_numeric(rows["rating"], errors="coerce").notna().sum())
            if "rating" in rows else 0, "data_time": int(rows["timestamp"].max()) if len(rows) else None}
