"""Recommenders built on numpy/scipy as scikit-learn estimators: bias baseline, popularity,
biased matrix factorization (SGD), EASE (ranking), the default hybrid of the last two, and
random scores (the floor every model must beat)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from reelops.models.base import Recommender, ranking_kernels, regularized_biases


class BiasBaseline(Recommender):
    """Global mean + regularized user and movie biases (Koren's baseline predictor).

    Args:
        user_reg: shrinkage of user biases towards 0 (in ratings).
        movie_reg: shrinkage of movie biases towards 0.
    """

    algorithm = "baseline"

    def __init__(self, user_reg: float = 15.0, movie_reg: float = 10.0):
        self.user_reg = user_reg
        self.movie_reg = movie_reg

    def _fit_core(self, users, movies, ratings, progress=False):
        self.mean_, self.user_bias_, self.movie_bias_ = regularized_biases(
            users, movies, ratings, len(self.user_ids_), len(self.movie_ids_), self.user_reg, self.movie_reg)


class Popularity(Recommender):
    """Ranks by how many training users rated each movie; rates with the bias baseline."""

    algorithm = "popularity"

    def _rank_known(self, users, parallel=False):
        return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_))).copy()


class RandomScores(Recommender):
    """Scores every movie at random (fixed per user and seed): the floor of any comparison, and
    the deliberately bad model a canary analysis must catch.

    Args:
        seed: the draw; the same seed gives every user the same ranking each time.
    """

    algorithm = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _rank_known(self, users, parallel=False):
        return np.stack([np.random.default_rng([self.seed, int(user)]).random(len(self.movie_ids_))
                         for user in users]) if len(users) else np.empty((0, len(self.movie_ids_)))

    def _predict_known(self, users, movies):
        low, high = self.rating_range_
        # A hash of the pair, so a rating asked twice is the same.
        key = (users.astype(np.int64) * 1_000_003 + movies.astype(np.int64) * 7_919 + self.seed) % 10_007
        return low + (high - low) * key / 10_006.0


def _factorize(model, users, movies, ratings, progress):
    """Biased matrix factorization by SGD (the Funk/Koren model), epochs shown with loss."""
    from reelops.console import progress as progress_bar
    from reelops.models._sgd import sgd_epoch

    rng = np.random.default_rng(model.seed)
    n_users, n_movies = len(model.user_ids_), len(model.movie_ids_)
    model.mf_mean_ = float(ratings.mean())
    model.mf_user_bias_ = np.zeros(n_users)
    model.mf_movie_bias_ = np.zeros(n_movies)
    model.user_factors_ = rng.normal(0, model.init_std, (n_users, model.n_factors))
    model.movie_factors_ = rng.normal(0, model.init_std, (n_movies, model.n_factors))
    users = users.astype(np.int64)
    movies = movies.astype(np.int64)
    with progress_bar(model.epochs, f"train {model.algorithm}", enabled=progress, unit="epoch") as bar:
        for _ in range(model.epochs):
            order = rng.permutation(len(ratings))
            squared = sgd_epoch(users, movies, ratings, order, model.mf_mean_, model.mf_user_bias_, model.mf_movie_bias_,
                                model.user_factors_, model.movie_factors_, model.learning_rate, model.factor_reg,
                                model.bias_reg)
            bar.set_postfix_str(f"train rmse {np.sqrt(squared / max(len(ratings), 1)):.4f}")
            bar.update(1)


def _mf_predict(model, users, movies):
    return (model.mf_mean_ + model.mf_user_bias_[users] + model.mf_movie_bias_[movies]
            + np.einsum("ij,ij->i", model.user_factors_[users], model.movie_factors_[movies]))


_MF_STATE = ("mf_user_bias_", "mf_movie_bias_", "user_factors_", "movie_factors_")


def _factorize_plus(model, users, movies, ratings, progress):
    """SVD++: biased MF plus implicit feedback (which movies each user rated)."""
    from reelops.console import progress as progress_bar
    from reelops.models._sgd import seed_numba, svdpp_epoch

    rng = np.random.default_rng(model.seed)
    seed_numba(model.seed)
    n_users, n_movies = len(model.user_ids_), len(model.movie_ids_)
    order = np.lexsort((movies, users))
    users, movies, ratings = users[order], movies[order].astype(np.int64), ratings[order]
    indptr = np.concatenate(([0], np.cumsum(np.bincount(users, minlength=n_users))))
    model.mf_mean_ = float(ratings.mean())
    model.mf_user_bias_ = np.zeros(n_users)
    model.mf_movie_bias_ = np.zeros(n_movies)
    model.user_factors_ = rng.normal(0, model.init_std, (n_users, model.n_factors))
    model.movie_factors_ = rng.normal(0, model.init_std, (n_movies, model.n_factors))
    implicit = np.zeros((n_movies, model.n_factors))
    with progress_bar(model.epochs, f"train {model.algorithm}", enabled=progress, unit="epoch") as bar:
        for _ in range(model.epochs):
            squared = svdpp_epoch(indptr, movies, ratings, rng.permutation(n_users), model.mf_mean_, model.mf_user_bias_,
                                  model.mf_movie_bias_, model.user_factors_, model.movie_factors_, implicit,
                                  model.learning_rate, model.factor_reg, model.bias_reg, model.implicit_rate,
                                  model.implicit_reg)
            bar.set_postfix_str(f"train rmse {np.sqrt(squared / max(len(ratings), 1)):.4f}")
            bar.update(1)
    # Fold the implicit part into the user factors: prediction and ranking stay p_u . q_i.
    sums = sparse.csr_matrix((np.ones(len(movies)), movies, indptr), shape=(n_users, n_movies)) @ implicit
    model.user_factors_ = model.user_factors_ + sums / np.sqrt(np.maximum(np.diff(indptr), 1))[:, None]


class MatrixFactorization(Recommender):
    """Biased matrix factorization trained by SGD (rating prediction).

    The defaults were chosen on two folds of ml-100k (RMSE about 0.903).

    Args:
        n_factors: latent dimensions.
        epochs: passes over the training ratings.
        learning_rate, factor_reg, bias_reg: SGD step and L2 penalties.
        init_std: standard deviation of the initial factors.
        seed: initialisation and shuffling.
    """

    algorithm = "sklearn-mf"

    def __init__(self, n_factors: int = 150, epochs: int = 80, learning_rate: float = 0.005, factor_reg: float = 0.1,
                 bias_reg: float = 0.02, init_std: float = 0.05, seed: int = 0):
        self.n_factors = n_factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.factor_reg = factor_reg
        self.bias_reg = bias_reg
        self.init_std = init_std
        self.seed = seed

    def _fit_core(self, users, movies, ratings, progress=False):
        _factorize(self, users, movies, ratings, progress)

    def _predict_known(self, users, movies):
        return _mf_predict(self, users, movies)

    def _rank_known(self, users, parallel=False):
        return (self.mf_mean_ + self.mf_user_bias_[users][:, None] + self.mf_movie_bias_[None, :]
                + self.user_factors_[users] @ self.movie_factors_.T)

    def _state(self):
        return {"mf_mean": np.array(self.mf_mean_), **{name.rstrip("_"): getattr(self, name) for name in _MF_STATE}}

    def _restore(self, arrays):
        self.mf_mean_ = float(arrays["mf_mean"])
        for name in _MF_STATE:
            setattr(self, name, arrays[name.rstrip("_")])


def _fit_ease(model, users, movies):
    """EASE (Steck 2019): item-item weights in closed form from who rated what."""
    n_users, n_movies = len(model.user_ids_), len(model.movie_ids_)
    # The closed form inverts a (movies x movies) matrix: cap it to the most rated movies.
    candidates = np.argsort(-model.popularity_, kind="stable")[: model.max_movies]
    candidates.sort()
    column = np.full(n_movies, -1)
    column[candidates] = np.arange(len(candidates))
    keep = column[movies] >= 0
    interactions = sparse.csr_matrix((np.ones(keep.sum(), dtype=np.float32), (users[keep], column[movies[keep]])),
                                     shape=(n_users, len(candidates)))
    gram = (interactions.T @ interactions).toarray()
    gram[np.diag_indices_from(gram)] += model.l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    model.ease_movies_ = candidates
    model.ease_weights_ = weights.astype(np.float32)


def _ease_rank(model, users, parallel: bool):
    kernels = ranking_kernels()
    column = _ease_columns(model)
    sum_rows = kernels.sum_rows_parallel if parallel else kernels.sum_rows
    # float32 end to end: half the memory traffic of the top-K selection that follows.
    if len(model.ease_movies_) == len(model.movie_ids_):  # every movie has weights
        scores = np.empty((len(users), len(model.movie_ids_)), dtype=np.float32)
        sum_rows(model.ease_weights_, model.seen_indptr_, model.seen_items_, column, users, scores)
        return scores
    capped = np.empty((len(users), len(model.ease_movies_)), dtype=np.float32)
    sum_rows(model.ease_weights_, model.seen_indptr_, model.seen_items_, column, users, capped)
    scores = np.full((len(users), len(model.movie_ids_)), -1e9, dtype=np.float32)  # movies outside the cap rank last
    scores[:, model.ease_movies_] = capped
    return scores


def _ease_columns(model) -> np.ndarray:
    """Movie index -> column of the capped EASE matrix (-1 outside the cap), built once."""
    cached = model.__dict__.get("_ease_columns_cache")
    if cached is None:
        cached = np.full(len(model.movie_ids_), -1)
        cached[model.ease_movies_] = np.arange(len(model.ease_movies_))
        model.__dict__["_ease_columns_cache"] = cached
    return cached


class SVDPlusPlus(MatrixFactorization):
    """SVD++ (biased MF with implicit feedback), trained by SGD user by user.

    The defaults were chosen on two folds of ml-100k (RMSE about 0.900).

    Args:
        implicit_rate, implicit_reg: SGD step and L2 penalty of the implicit factors.
        (the others as :class:`MatrixFactorization`)
    """

    algorithm = "sklearn-svdpp"

    def __init__(self, n_factors: int = 150, epochs: int = 60, learning_rate: float = 0.005, factor_reg: float = 0.1,
                 bias_reg: float = 0.02, init_std: float = 0.05, implicit_rate: float = 0.0005,
                 implicit_reg: float = 0.1, seed: int = 0):
        super().__init__(n_factors=n_factors, epochs=epochs, learning_rate=learning_rate, factor_reg=factor_reg,
                         bias_reg=bias_reg, init_std=init_std, seed=seed)
        self.implicit_rate = implicit_rate
        self.implicit_reg = implicit_reg

    def _fit_core(self, users, movies, ratings, progress=False):
        _factorize_plus(self, users, movies, ratings, progress)


class Ease(Recommender):
    """EASE item-item ranking model; ratings come from the bias baseline.

    Args:
        l2: ridge penalty of the item-item weights (chosen on ml-100k's time holdout).
        max_movies: the most popular movies the weights cover (memory is max_movies²).
    """

    algorithm = "sklearn-ease"

    def __init__(self, l2: float = 200.0, max_movies: int = 20_000):
        self.l2 = l2
        self.max_movies = max_movies

    def _fit_core(self, users, movies, ratings, progress=False):
        _fit_ease(self, users, movies)

    def _rank_known(self, users, parallel=False):
        return _ease_rank(self, users, parallel)

    def _state(self):
        return {"ease_movies": self.ease_movies_, "ease_weights": self.ease_weights_}

    def _restore(self, arrays):
        self.ease_movies_, self.ease_weights_ = arrays["ease_movies"], arrays["ease_weights"]


class Hybrid(SVDPlusPlus):
    """The default: SVD++ for ratings, EASE for ranking, side features and popularity for
    users the model has not seen.

    A model trained only to minimise rating error ranks poorly over the full catalogue, and
    a ranking model does not predict stars: each answer comes from the part made for it.

    Args:
        l2, max_movies: as :class:`Ease`; the others as :class:`SVDPlusPlus`.
    """

    algorithm = "hybrid"

    def __init__(self, n_factors: int = 150, epochs: int = 60, learning_rate: float = 0.005, factor_reg: float = 0.1,
                 bias_reg: float = 0.02, init_std: float = 0.05, implicit_rate: float = 0.0005,
                 implicit_reg: float = 0.1, seed: int = 0, l2: float = 200.0, max_movies: int = 20_000):
        super().__init__(n_factors=n_factors, epochs=epochs, learning_rate=learning_rate, factor_reg=factor_reg,
                         bias_reg=bias_reg, init_std=init_std, implicit_rate=implicit_rate, implicit_reg=implicit_reg,
                         seed=seed)
        self.l2 = l2
        self.max_movies = max_movies

    def _fit_core(self, users, movies, ratings, progress=False):
        super()._fit_core(users, movies, ratings, progress)
        _fit_ease(self, users, movies)

    def _rank_known(self, users, parallel=False):
        return _ease_rank(self, users, parallel)

    def _state(self):
        return {**super()._state(), **Ease._state(self)}

    def _restore(self, arrays):
        super()._restore(arrays)
        Ease._restore(self, arrays)
