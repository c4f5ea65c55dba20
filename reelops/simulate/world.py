"""The world: users, movies, hidden tastes, who rates what and how, and the oracle.

How ratings are drawn (and why the oracle agrees with them) is told in :mod:`reelops.simulate`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from reelops.data.layouts import GENRES
from reelops.simulate.population import GENRE_WEIGHTS, OCCUPATION_WEIGHTS, TARGET_STAR_SHARES, ZIP_REGION_WEIGHTS
from reelops.simulate.scenarios import ONSET_FRACTION, Scenario


# Spread of the latent taste factors (users and movies): the signal a factor model can learn.
FACTOR_SD = 0.5

_TITLE_WORDS_A = ["Silent", "Last", "Broken", "Golden", "Midnight", "Lost", "Wild", "Crimson", "Hidden",
                  "Electric", "Distant", "Burning", "Frozen", "Secret", "Little", "Dark", "Lucky", "Iron"]
_TITLE_WORDS_B = ["River", "Summer", "Empire", "Garden", "Highway", "Promise", "Harbor", "Witness", "Machine",
                  "Orchard", "Kingdom", "Signal", "Voyage", "Stranger", "Circus", "Letter", "Planet", "Heart"]

_DAY = 86_400


@dataclass
class WorldConfig:
    """Size and shape of a world; the defaults resemble ml-100k."""

    n_users: int = 943
    n_movies: int = 1682
    min_ratings_per_user: int = 20
    activity_median_extra: float = 40.0
    activity_sigma: float = 1.2
    popularity_sigma: float = 1.8
    affinity_choice_weight: float = 2.0
    factor_choice_weight: float = 0.75
    n_factors: int = 8
    noise_sd: float = 0.65
    session_mean_size: float = 68.0
    start: str = "1997-09-20"
    days: int = 214

    @property
    def start_timestamp(self) -> int:
        return int(_dt.datetime.fromisoformat(self.start).replace(tzinfo=_dt.timezone.utc).timestamp())


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """A counter-based hash: the same (seed, user, movie) always gives the same noise."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _top_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Column indexes of each row's k largest keys, best first."""
    k = min(k, keys.shape[1])
    if k == 0:
        return np.zeros((keys.shape[0], 0), dtype=np.int64)
    top = np.argpartition(-keys, k - 1, axis=1)[:, :k] if k < keys.shape[1] else np.tile(np.arange(keys.shape[1]), (keys.shape[0], 1))
    order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


class World:
    """A seeded movie world under a scenario: generator and oracle in one.

    Args:
        config: sizes and shape.
        scenario: the events (see :meth:`Scenario.parse`).
        seed: every random choice derives from it.
    """

    def __init__(self, config: WorldConfig | None = None, scenario: Scenario | None = None, seed: int = 0):
        self.config = config or WorldConfig()
        self.scenario = scenario or Scenario.parse("none")
        self.seed = int(seed)
        cfg = self.config
        if cfg.n_users < 2 or cfg.n_movies < 10:
            raise ValueError("a world needs at least 2 users and 10 movies")
        self.start = cfg.start_timestamp
        self.end = self.start + cfg.days * _DAY
        self.onset = self.start + int(ONSET_FRACTION * cfg.days * _DAY)
        self._build_base()
        self._apply_events()
        self._calibrate_cut_points()

    # ------------------------------------------------------------------ random streams

    def _rng(self, *stream: int) -> np.random.Generator:
        """Independent streams: the base world does not depend on which events follow."""
        return np.random.default_rng([self.seed, *stream])

    # ------------------------------------------------------------------ the base world

    def _sample_users(self, n: int, rng: np.random.Generator, age_shift: float = 0.0, student_share=None) -> dict:
        age = np.clip(np.round(rng.gamma(7.5, 4.5, n) + 1.0 - age_shift), 7, 73).astype(np.int64)
        gender = np.where(rng.random(n) < 0.71, "M", "F")
        names = list(OCCUPATION_WEIGHTS)
        weights = np.array(list(OCCUPATION_WEIGHTS.values()), dtype=float)
        if student_share is not None:
            student = names.index("student")
            others = weights.copy()
            others[student] = 0
            weights = others / others.sum() * (1 - student_share)
            weights[student] = student_share
        occupation = rng.choice(len(names), size=n, p=weights / weights.sum())
        region = rng.choice(10, size=n, p=ZIP_REGION_WEIGHTS / ZIP_REGION_WEIGHTS.sum())
        zips = [f"{r}{z:04d}" for r, z in zip(region, rng.integers(0, 10_000, n))]
        return {"age": age, "gender": gender, "occupation": occupation, "zip": np.array(zips, dtype=object)}

    def _taste_of(self, users: dict, rng: np.random.Generator) -> dict:
        """Hidden tastes: genre affinity from demographics plus a personal part, bias, factors."""
        n = len(users["age"])
        age_band = np.digitize(users["age"], [18, 25, 35, 45, 55])
        is_female = (users["gender"] == "F").astype(int)
        affinity = (
            self.age_genre[age_band] + self.gender_genre[is_female] + self.occupation_genre[users["occupation"]]
            + rng.normal(0, 0.3, (n, len(GENRES)))
        )
        bias = rng.normal(0, 0.4, n) + self.age_bias[age_band]
        factors = rng.normal(0, FACTOR_SD, (n, self.config.n_factors))
        return {"affinity": affinity.astype(np.float32), "bias": bias.astype(np.float32), "factors": factors.astype(np.float32)}

    def _build_base(self) -> None:
        cfg = self.config
        rng = self._rng(1)
        # Demographic genre effects: what makes side features predictive and cold start learnable.
        self.age_genre = rng.normal(0, 0.35, (6, len(GENRES)))
        self.gender_genre = rng.normal(0, 0.3, (2, len(GENRES)))
        self.occupation_genre = rng.normal(0, 0.25, (len(OCCUPATION_WEIGHTS), len(GENRES)))
        self.age_bias = np.array([-0.15, -0.1, 0.0, 0.05, 0.1, 0.15])

        users = self._sample_users(cfg.n_users, self._rng(2))
        taste = self._taste_of(users, self._rng(3))
        self.users = {**users, **taste, "user_id": np.arange(1, cfg.n_users + 1), "cohort": np.zeros(cfg.n_users, int)}

        mrng = self._rng(4)
        self.movie_genres = self._sample_genres(cfg.n_movies, mrng)
        self.movie_year = self._sample_years(cfg.n_movies, mrng)
        self.movie_bias = mrng.normal(0, 0.45, cfg.n_movies).astype(np.float32)
        self.movie_factors = mrng.normal(0, FACTOR_SD, (cfg.n_movies, cfg.n_factors)).astype(np.float32)
        # Popularity follows quality a little and luck a lot (heavy tail).
        self.movie_log_popularity = (cfg.popularity_sigma * mrng.standard_normal(cfg.n_movies) + 0.8 * self.movie_bias).astype(np.float32)
        self.movie_released = np.full(cfg.n_movies, self.start, dtype=np.int64)
        self.n_base_movies = cfg.n_movies

        # Activity: a floor (GroupLens kept users with 20+ ratings) plus a log-normal tail.
        arng = self._rng(5)
        extra = np.floor(arng.lognormal(np.log(cfg.activity_median_extra), cfg.activity_sigma, cfg.n_users))
        self.users["n_ratings"] = np.minimum(cfg.min_ratings_per_user + extra, int(0.7 * cfg.n_movies)).astype(np.int64)
        self.users["joined"] = self.start + np.floor(arng.beta(0.9, 1.6, cfg.n_users) * (self.end - self.start) * 0.9).astype(np.int64)

    def _sample_genres(self, n: int, rng: np.random.Generator) -> np.ndarray:
        flags = np.zeros((n, len(GENRES)), dtype=np.float32)
        counts = rng.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15])
        probabilities = GENRE_WEIGHTS / GENRE_WEIGHTS.sum()
        for index, count in enumerate(counts):
            flags[index, rng.choice(len(GENRES), size=count, replace=False, p=probabilities)] = 1.0
        return flags

    def _sample_years(self, n: int, rng: np.random.Generator) -> np.ndarray:
        recent = 1998 - np.floor(rng.exponential(3.5, n))
        classic = rng.integers(1930, 1990, n)
        return np.where(rng.random(n) < 0.8, np.maximum(recent, 1960), classic).astype(np.int64)

    # ------------------------------------------------------------------ events

    def _apply_events(self) -> None:
        params = self.scenario.parameters
        cfg = self.config
        self.taste_shift = None
        self.shock_movie = None
        self.new_release_share = 0.0
        if "new_releases" in params:
            p = params["new_releases"]
            n_new = int(round(p["extra_movie_share"] * self.n_base_movies))
            if n_new:
                rng = self._rng(20)
                self.movie_genres = np.vstack([self.movie_genres, self._sample_genres(n_new, rng)])
                self.movie_year = np.concatenate([self.movie_year, np.full(n_new, 1998)])
                self.movie_bias = np.concatenate([self.movie_bias, rng.normal(0, 0.45, n_new).astype(np.float32)])
                self.movie_factors = np.vstack([self.movie_factors, rng.normal(0, FACTOR_SD, (n_new, cfg.n_factors)).astype(np.float32)])
                self.movie_log_popularity = np.concatenate(
                    [self.movie_log_popularity, (cfg.popularity_sigma * rng.standard_normal(n_new)).astype(np.float32)])
                self.movie_released = np.concatenate([self.movie_released, np.full(n_new, self.onset)])
                self.new_release_share = p["rating_share"]
        if "population_shift" in params:
            p = params["population_shift"]
            # Enough newcomers that they are `new_user_share` of the users active after onset.
            active_after = int(self._post_onset_activity(self.users)[0].sum())
            share = p["new_user_share"]
            n_new = int(round(active_after * share / (1 - share))) if share < 1 else active_after
            if n_new:
                rng = self._rng(30)
                users = self._sample_users(n_new, rng, age_shift=p["age_shift_years"], student_share=p["student_share"])
                taste = self._taste_of(users, self._rng(31))
                arng = self._rng(32)
                extra = np.floor(arng.lognormal(np.log(cfg.activity_median_extra), cfg.activity_sigma, n_new))
                new = {**users, **taste,
                       "user_id": np.arange(len(self.users["age"]) + 1, len(self.users["age"]) + n_new + 1),
                       "cohort": np.ones(n_new, int),
                       "n_ratings": np.minimum(cfg.min_ratings_per_user + extra, int(0.7 * cfg.n_movies)).astype(np.int64),
                       # The cohort arrives as a burst (a campaign, a new campus): most join within days.
                       "joined": self.onset + np.floor(arng.exponential(2 * _DAY, n_new)).astype(np.int64)}
                self.users = {key: np.concatenate([self.users[key], new[key]]) for key in self.users}
        if "taste_shift" in params:
            p = params["taste_shift"]
            rng = self._rng(40)
            n_users = len(self.users["age"])
            affected = rng.random(n_users) < p["user_share"]
            genres = rng.choice(np.arange(1, len(GENRES)), size=p["n_genres"], replace=False, p=GENRE_WEIGHTS[1:] / GENRE_WEIGHTS[1:].sum())
            direction = rng.choice([-1.0, 1.0], size=p["n_genres"])
            delta = np.zeros((n_users, len(GENRES)), dtype=np.float32)
            sizes = np.abs(rng.normal(1.0, 0.25, (n_users, p["n_genres"]))) * p["shift_stars"]
            delta[:, genres] = (sizes * direction) * affected[:, None]
            self.taste_shift = {"affected": affected, "genres": genres, "direction": direction, "delta": delta}
        if "popularity_shock" in params:
            # A title that was obscure becomes the one everybody rates.
            base_rank = np.argsort(self.movie_log_popularity[: self.n_base_movies])
            self.shock_movie = int(base_rank[int(0.2 * self.n_base_movies)])

    def _post_onset_activity(self, users: dict) -> tuple:
        """Which users rate after onset, and how many of their ratings fall there (base timeline)."""
        owner, stamps = self._user_times(users)
        after = np.bincount(owner[stamps >= self.onset], minlength=len(users["age"]))
        return after > 0, after

    # ------------------------------------------------------------------ timeline

    def _user_times(self, users: dict) -> tuple:
        """Every rating's owner (user index) and time: sessions after joining, 20 s to 3 min apart.

        Returns flat arrays grouped by user, in time order within each user. Each cohort
        draws from its own stream, so base users' times do not move when a cohort is added.
        """
        owners, times = [], []
        for cohort in np.unique(users["cohort"]):
            members = np.flatnonzero(users["cohort"] == cohort)
            owner, stamp = self._cohort_times(users, members, np.random.default_rng([self.seed, 7, int(cohort)]))
            owners.append(owner)
            times.append(stamp)
        return np.concatenate(owners), np.concatenate(times)

    def _cohort_times(self, users: dict, members: np.ndarray, rng: np.random.Generator) -> tuple:
        cfg = self.config
        n_ratings = users["n_ratings"][members].astype(np.int64)
        n_sessions = np.minimum(1 + rng.poisson(np.maximum(n_ratings - 1, 0) / cfg.session_mean_size), n_ratings)
        joined = users["joined"][members].astype(np.int64)
        span = np.maximum(self.end - joined, 3600)
        session_user = np.repeat(np.arange(len(members)), n_sessions)
        session_start = joined[session_user] + np.floor(rng.random(len(session_user)) ** 1.5 * span[session_user]).astype(np.int64)
        # Order sessions by time within each user.
        order = np.lexsort((session_start, session_user))
        session_start = session_start[order]
        first_session = np.concatenate(([0], np.cumsum(n_sessions)[:-1]))
        # Every session holds one rating; the rest fall into a user's sessions at random.
        extra = n_ratings - n_sessions
        extra_user = np.repeat(np.arange(len(members)), extra)
        extra_session = first_session[extra_user] + np.floor(rng.random(len(extra_user)) * n_sessions[extra_user]).astype(np.int64)
        session_size = 1 + np.bincount(extra_session, minlength=len(session_start))
        rating_session = np.repeat(np.arange(len(session_start)), session_size)
        gaps = rng.integers(20, 180, len(rating_session))
        # Cumulative gaps restart at every session.
        cumulative = np.cumsum(gaps)
        session_first = np.concatenate(([0], np.cumsum(session_size)[:-1]))
        offset = cumulative - (cumulative[session_first] - gaps[session_first])[rating_session]
        stamps = np.minimum(session_start[rating_session] + offset, self.end - 1)
        return members[session_user[order][rating_session]], stamps

    # ------------------------------------------------------------------ scores

    def _index(self, user_ids, movie_ids) -> tuple:
        return np.asarray(user_ids, dtype=np.int64) - 1, np.asarray(movie_ids, dtype=np.int64) - 1

    def latent(self, user_ids, movie_ids, timestamps) -> np.ndarray:
        """Noise-free score of (user, movie) pairs at the given times (events applied)."""
        u, m = self._index(user_ids, movie_ids)
        genres = self.movie_genres[m]
        genre_count = np.maximum(genres.sum(axis=1), 1.0)
        affinity = self.users["affinity"][u]
        if self.taste_shift is not None:
            after = np.asarray(timestamps) >= self.onset
            affinity = affinity + self.taste_shift["delta"][u] * after[:, None]
        score = (
            self.users["bias"][u] + self.movie_bias[m]
            + (affinity * genres).sum(axis=1) / genre_count
            + (self.users["factors"][u] * self.movie_factors[m]).sum(axis=1)
        )
        return score.astype(np.float64)

    def noise(self, user_ids, movie_ids) -> np.ndarray:
        """The pair's fixed noise draw: N(0, noise_sd), a pure function of (seed, user, movie)."""
        u = np.asarray(user_ids, dtype=np.uint64)
        m = np.asarray(movie_ids, dtype=np.uint64)
        key = _splitmix64(_splitmix64(np.uint64(self.seed) + np.zeros_like(u)) ^ (u << np.uint64(24)) ^ m)
        uniform = (key >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        return ndtri(np.clip(uniform, 1e-12, 1 - 1e-12)) * self.config.noise_sd

    def rating(self, user_ids, movie_ids, timestamps) -> np.ndarray:
        """The oracle: the whole-star rating these users would give these movies at these times."""
        score = self.latent(user_ids, movie_ids, timestamps) + self.noise(user_ids, movie_ids)
        return (1 + (score[:, None] > self.cut_points[None, :]).sum(axis=1)).astype(np.int64)

    def expected_rating(self, user_ids, movie_ids, timestamps) -> np.ndarray:
        """E[rating] over the noise: the best any model could predict."""
        latent = self.latent(user_ids, movie_ids, timestamps)
        above = ndtr((latent[:, None] - self.cut_points[None, :]) / self.config.noise_sd)
        return 1.0 + above.sum(axis=1)

    def rating_variance(self, user_ids, movie_ids, timestamps) -> np.ndarray:
        """Var[rating] over the noise: what the noise and whole stars imply per pair."""
        latent = self.latent(user_ids, movie_ids, timestamps)
        cdf = ndtr((self.cut_points[None, :] - latent[:, None]) / self.config.noise_sd)
        cumulative = np.concatenate([np.zeros((len(latent), 1)), cdf, np.ones((len(latent), 1))], axis=1)
        probabilities = np.diff(cumulative, axis=1)
        stars = np.arange(1, 6)
        mean = probabilities @ stars
        return probabilities @ stars**2 - mean**2

    def _calibrate_cut_points(self) -> None:
        """Cut points that give ml-100k's star shares on the base world's rated pairs."""
        self.cut_points = np.zeros(4)
        pairs = self._base_pairs_for_calibration()
        latent = self.latent(pairs[0], pairs[1], np.full(len(pairs[0]), self.start))
        targets = np.cumsum(TARGET_STAR_SHARES)[:4]
        cuts = []
        for target in targets:
            low, high = latent.min() - 5, latent.max() + 5
            for _ in range(60):  # bisection on the mean CDF: monotone in the cut point
                middle = (low + high) / 2
                share_below = ndtr((middle - latent) / self.config.noise_sd).mean()
                low, high = (middle, high) if share_below < target else (low, middle)
            cuts.append((low + high) / 2)
        self.cut_points = np.array(cuts)

    def _base_pairs_for_calibration(self) -> tuple:
        """(user, movie) pairs as the base world's first users would choose them."""
        rng = self._rng(8)
        chosen = np.flatnonzero(self.users["cohort"] == 0)[:600]
        n_ratings = self.users["n_ratings"][chosen]
        keys = self._choice_keys(chosen, np.arange(self.n_base_movies), rng)
        ranked = _top_k(keys, int(n_ratings.max()))
        wanted = np.arange(ranked.shape[1])[None, :] < n_ratings[:, None]
        return np.broadcast_to(chosen[:, None] + 1, ranked.shape)[wanted], ranked[wanted] + 1

    def _choice_keys(self, user_index: np.ndarray, movie_index: np.ndarray, rng, apply_taste_shift=False) -> np.ndarray:
        """Gumbel keys: top-k of them is sampling without replacement ∝ popularity x affinity.

        Exposure uses the pre-shift affinities on purpose: in ``taste_shift`` who shows up
        and what they watch stay the same, only the ratings change.
        """
        genres = self.movie_genres[movie_index]
        genre_count = np.maximum(genres.sum(axis=1), 1.0)
        affinity = self.users["affinity"][user_index] @ (genres / genre_count[:, None]).T
        # People also seek out what matches their latent taste (what makes ranking learnable).
        affinity += self.users["factors"][user_index] @ self.movie_factors[movie_index].T * self.config.factor_choice_weight
        keys = self.movie_log_popularity[movie_index][None, :] + self.config.affinity_choice_weight * affinity
        uniform = rng.random(keys.shape, dtype=np.float32)
        np.maximum(uniform, np.float32(1e-30), out=uniform)
        return keys - np.log(-np.log(uniform))  # + Gumbel(0, 1) noise

    # ------------------------------------------------------------------ generation

    def generate(self) -> dict:
        """Generate the world's tables: ratings (time order), users, movies."""
        owner, stamps = self._user_times(self.users)
        n_users = len(self.users["age"])
        counts = np.bincount(owner, minlength=n_users)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        # Separate streams for base movies, new releases and post-onset choices: the world
        # before onset is the same whatever events follow.
        base_rng, new_rng, post_rng, order_rng = self._rng(9), self._rng(19), self._rng(11), self._rng(12)
        all_movies = np.arange(len(self.movie_year))
        base_movies = all_movies[: self.n_base_movies]
        new_movies = all_movies[self.n_base_movies:]
        movie_col = np.empty(len(owner), dtype=np.int64)
        chunk = 256
        for cohort in np.unique(self.users["cohort"]):
            members = np.flatnonzero(self.users["cohort"] == cohort)
            for first in range(0, len(members), chunk):
                block = members[first: first + chunk]
                # Enough of each user's best-ranked movies for all its ratings (plus the shock title).
                depth = int(counts[block].max()) + 2
                ranked_base = _top_k(self._choice_keys(block, base_movies, base_rng), depth)
                ranked_new = (_top_k(self._choice_keys(block, new_movies, new_rng), depth) + self.n_base_movies
                              if len(new_movies) else None)
                for row, index in enumerate(block):
                    span = slice(offsets[index], offsets[index + 1])
                    after = stamps[span] >= self.onset
                    movie_col[span] = self._pick_movies(
                        ranked_base[row], None if ranked_new is None else ranked_new[row], len(after), int(after.sum()),
                        order_rng, post_rng)
        user_ids = owner + 1
        movie_ids = movie_col + 1
        ratings = self.rating(user_ids, movie_ids, stamps)
        frame = pd.DataFrame({"user_id": user_ids, "movie_id": movie_ids, "rating": ratings, "timestamp": stamps})
        frame = frame.sort_values(["timestamp", "user_id", "movie_id"], kind="stable").reset_index(drop=True)
        return {"ratings": frame, "users": self.users_frame(), "movies": self.movies_frame()}

    def _pick_movies(self, ranked_base, ranked_new, n_total: int, n_after: int, order_rng, post_rng) -> np.ndarray:
        """Movies for one user's ratings, in the order of its rating times.

        The user rates its ``n_total`` best-ranked base movies in a random order over its
        timeline, so nothing drifts at onset unless an event says so. After onset the
        shock title (if any) takes the first post-onset slot and new releases take a
        share of the other post-onset slots, replacing base movies the user then never gets to.
        """
        sequence = ranked_base[:n_total][order_rng.permutation(n_total)].tolist()
        n_before = n_total - n_after
        if not n_after:
            return np.asarray(sequence, dtype=np.int64)
        slots = list(range(n_before, n_total))
        if self.shock_movie is not None and self.shock_movie not in sequence[:n_before]:
            if post_rng.random() < min(1.0, self.scenario.parameters["popularity_shock"]["rating_share"] * 10):
                if self.shock_movie in sequence:  # already due later: it comes first instead
                    later = sequence.index(self.shock_movie)
                    sequence[later], sequence[n_before] = sequence[n_before], sequence[later]
                else:
                    sequence[n_before] = self.shock_movie
                slots = slots[1:]
        n_new = post_rng.binomial(len(slots), self.new_release_share) if ranked_new is not None and slots else 0
        if n_new:
            for slot, movie in zip(post_rng.choice(slots, size=n_new, replace=False), ranked_new[:n_new]):
                sequence[slot] = int(movie)
        return np.asarray(sequence, dtype=np.int64)

    def users_frame(self) -> pd.DataFrame:
        names = np.array(list(OCCUPATION_WEIGHTS), dtype=object)
        return pd.DataFrame({
            "user_id": self.users["user_id"], "age": self.users["age"], "gender": self.users["gender"],
            "occupation": names[self.users["occupation"]], "zip": self.users["zip"],
        })

    def movies_frame(self) -> pd.DataFrame:
        rng = self._rng(10)
        n = len(self.movie_year)
        words_a = rng.integers(0, len(_TITLE_WORDS_A), n)
        words_b = rng.integers(0, len(_TITLE_WORDS_B), n)
        titles = [f"{_TITLE_WORDS_A[a]} {_TITLE_WORDS_B[b]} {i + 1} ({y})" for i, (a, b, y) in enumerate(zip(words_a, words_b, self.movie_year))]
        genre_names = np.array(GENRES, dtype=object)
        genres = ["|".join(genre_names[row.astype(bool)]) for row in self.movie_genres]
        return pd.DataFrame({"movie_id": np.arange(1, n + 1), "title": titles, "year": self.movie_year, "genres": genres})

    # ------------------------------------------------------------------ requests

    def request_stream(self, start: int, end: int, rate_per_hour: float | None = None) -> pd.DataFrame:
        """Recommendation requests (timestamp, user_id) arriving in ``[start, end)``.

        Users arrive as a Poisson process; each arrival is a user who has joined by then,
        chosen in proportion to activity, so the stream follows the scenario (a cohort
        that arrives after onset shows up after onset).
        """
        if end <= start:
            raise ValueError("request_stream needs end > start")
        rng = np.random.default_rng([self.seed, 50, int(start), int(end)])
        if rate_per_hour is None:
            sessions = self.users["n_ratings"].sum() / self.config.session_mean_size
            rate_per_hour = sessions / ((self.end - self.start) / 3600)
        n = rng.poisson(rate_per_hour * (end - start) / 3600)
        stamps = np.sort(rng.integers(start, end, n))
        joined = self.users["joined"]
        weights = self.users["n_ratings"].astype(float)
        order = np.argsort(joined)
        sorted_joined = joined[order]
        cumulative = np.cumsum(weights[order])
        present = np.searchsorted(sorted_joined, stamps, side="right")
        user_ids = np.empty(n, dtype=np.int64)
        for index, (count, _) in enumerate(zip(present, stamps)):
            count = max(count, 1)
            pick = np.searchsorted(cumulative[:count], rng.random() * cumulative[count - 1], side="right")
            user_ids[index] = self.users["user_id"][order[min(pick, count - 1)]]
        return pd.DataFrame({"timestamp": stamps, "user_id": user_ids})

    # ------------------------------------------------------------------ description

    def describe(self) -> dict:
        """What ``scenario.json`` records: events, onsets, parameters, world settings."""
        events = []
        for name in self.scenario.events:
            entry = {"name": name, "onset_timestamp": self.onset, "parameters": self.scenario.parameters[name]}
            if name == "taste_shift" and self.taste_shift is not None:
                entry["genres"] = [GENRES[g] for g in self.taste_shift["genres"]]
                entry["directions"] = self.taste_shift["direction"].tolist()
                entry["affected_users"] = int(self.taste_shift["affected"].sum())
            if name == "popularity_shock":
                entry["movie_id"] = self.shock_movie + 1
            if name == "new_releases":
                entry["first_new_movie_id"] = self.n_base_movies + 1
                entry["new_movies"] = int(len(self.movie_year) - self.n_base_movies)
            if name == "population_shift":
                entry["first_new_user_id"] = int(self.users["user_id"][self.users["cohort"] == 1].min()) if (self.users["cohort"] == 1).any() else None
                entry["new_users"] = int((self.users["cohort"] == 1).sum())
            events.append(entry)
        return {
            "scenario": self.scenario.name,
            "strength": self.scenario.strength,
            "seed": self.seed,
            "onset_timestamp": self.onset,
            "onset_fraction": ONSET_FRACTION,
            "start_timestamp": self.start,
            "end_timestamp": self.end,
            "events": events,
            "config": asdict(self.config),
            "cut_points": [round(float(c), 12) for c in self.cut_points],
        }

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> "World":
        """Rebuild the world (and so the oracle) that wrote ``directory``."""
        spec = json.loads((Path(directory) / "scenario.json").read_text())
        return cls(WorldConfig(**spec["config"]), Scenario.parse(spec["scenario"], spec["strength"]), spec["seed"])
