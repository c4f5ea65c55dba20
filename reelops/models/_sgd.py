"""The SGD epoch of biased matrix factorization, compiled with numba (imported only to train)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, fastmath=True)
def sgd_epoch(users, movies, ratings, order, mean, user_bias, movie_bias, user_factors, movie_factors,
              learning_rate, factor_reg, bias_reg):  # pragma: no cover - compiled
    """One pass over the ratings in ``order``; returns the sum of squared errors seen."""
    k = user_factors.shape[1]
    total = 0.0
    for t in order:
        u = users[t]
        m = movies[t]
        prediction = mean + user_bias[u] + movie_bias[m]
        for f in range(k):
            prediction += user_factors[u, f] * movie_factors[m, f]
        error = ratings[t] - prediction
        total += error * error
        user_bias[u] += learning_rate * (error - bias_reg * user_bias[u])
        movie_bias[m] += learning_rate * (error - bias_reg * movie_bias[m])
        for f in range(k):
            pu = user_factors[u, f]
            qm = movie_factors[m, f]
            user_factors[u, f] += learning_rate * (error * qm - factor_reg * pu)
            movie_factors[m, f] += learning_rate * (error * pu - factor_reg * qm)
    return total


def warm_up() -> None:
    """Compile (or load the cached compilation) before timing-sensitive work."""
    empty_i = np.zeros(1, dtype=np.int64)
    sgd_epoch(empty_i, empty_i, np.zeros(1), empty_i, 0.0, np.zeros(1), np.zeros(1), np.zeros((1, 1)),
              np.zeros((1, 1)), 0.0, 0.0, 0.0)


@numba.njit(cache=True, fastmath=True)
def svdpp_epoch(indptr, items, ratings, user_order, mean, user_bias, movie_bias, user_factors, movie_factors,
                implicit_factors, learning_rate, factor_reg, bias_reg, implicit_rate, implicit_reg):  # pragma: no cover
    """One SVD++ pass, user by user (Koren 2008).

    The implicit part |N(u)|^-1/2 sum_j y_j is computed once per user and its gradient
    applied after the user's ratings: the cost per epoch is O(ratings x factors) instead
    of O(ratings x history x factors).
    """
    k = user_factors.shape[1]
    total = 0.0
    implicit = np.zeros(k)
    gradient = np.zeros(k)
    for u in user_order:
        start = indptr[u]
        end = indptr[u + 1]
        n = end - start
        if n == 0:
            continue
        norm = 1.0 / np.sqrt(n)
        for f in range(k):
            implicit[f] = 0.0
            gradient[f] = 0.0
        for t in range(start, end):
            j = items[t]
            for f in range(k):
                implicit[f] += implicit_factors[j, f]
        for f in range(k):
            implicit[f] *= norm
        for offset in np.random.permutation(n):
            t = start + offset
            i = items[t]
            prediction = mean + user_bias[u] + movie_bias[i]
            for f in range(k):
                prediction += (user_factors[u, f] + implicit[f]) * movie_factors[i, f]
            error = ratings[t] - prediction
            total += error * error
            user_bias[u] += learning_rate * (error - bias_reg * user_bias[u])
            movie_bias[i] += learning_rate * (error - bias_reg * movie_bias[i])
            for f in range(k):
                pu = user_factors[u, f]
                qi = movie_factors[i, f]
                user_factors[u, f] += learning_rate * (error * qi - factor_reg * pu)
                movie_factors[i, f] += learning_rate * (error * (pu + implicit[f]) - factor_reg * qi)
                gradient[f] += error * qi
        for t in range(start, end):
            j = items[t]
            for f in range(k):
                implicit_factors[j, f] += implicit_rate * (gradient[f] * norm - implicit_reg * implicit_factors[j, f])
    return total


def seed_numba(seed: int) -> None:
    """Seed numba's own generator (np.random inside compiled code)."""
    _seed(seed)


@numba.njit(cache=True)
def _seed(seed):  # pragma: no cover - compiled
    np.random.seed(seed)
