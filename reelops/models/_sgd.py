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
