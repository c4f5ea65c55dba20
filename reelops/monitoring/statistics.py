"""The statistics behind model and concept drift, public so benchmarks test the same code.

A user's errors in a window are not independent (one person, one session), which the
independent-sample tests of Alibi Detect assume; these tests treat users as clusters
(cluster-robust means and t-tests) and look for a genre lean of the errors within users.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats


def within_user(values: np.ndarray, flags: np.ndarray, users: np.ndarray, min_rows: int = 3,
                with_users: bool = False) -> tuple:
    """Errors and genre flags (``unknown`` left out) centred on each user's own means.

    Centring takes out what a user has in common across movies (a bias the model got
    wrong), which dominates a window of a few dozen users; what is left is how the
    errors lean by genre. Users with fewer than ``min_rows`` rows carry no such contrast.

    Returns:
        ``(residuals, genre_flags, user_codes, rows_per_user)`` of the rows kept, and the
        user of each code with ``with_users``.
    """
    _, codes = np.unique(users, return_inverse=True)
    keep = np.bincount(codes)[codes] >= min_rows
    values, genres = values[keep], flags[keep][:, 1:].astype(float)
    kept_users, codes = np.unique(users[keep], return_inverse=True)
    counts = np.bincount(codes)  # every kept user has at least min_rows rows
    n_users = len(counts)
    values = values - (np.bincount(codes, values, n_users) / counts)[codes]
    genre_means = np.stack([np.bincount(codes, genres[:, g], n_users) for g in range(genres.shape[1])], axis=1)
    genres = genres - (genre_means / counts[:, None])[codes]
    return (values, genres, codes, counts, kept_users) if with_users else (values, genres, codes, counts)


def within_user_genre_sums(errors: np.ndarray, flags: np.ndarray, users: np.ndarray, lean: np.ndarray,
                            min_rows_per_genre: int = 10) -> tuple | None:
    """How a window's errors lean by genre within users, beyond the reference lean.

    Under "no change", the errors left after the reference lean are exchangeable across
    one user's movies, so ``S = sum over rows of genre flags x error`` has mean zero and the
    covariance the exchange implies, summed over users (each user's error variance times
    the spread of its genre flags).

    Returns:
        ``(S, covariance, genres)`` over the genres (``unknown`` left out) with at least
        ``min_rows_per_genre`` rows that vary within a user, or ``None`` when there are none.
    """
    evidence = genre_evidence(errors, flags, users, lean)
    if evidence is None:
        return None
    varied = evidence["rows"] >= min_rows_per_genre
    if not varied.any():
        return None
    return evidence["sums"][varied], evidence["covariance"][np.ix_(varied, varied)], np.flatnonzero(varied) + 1


def within_user_genre_test(errors: np.ndarray, flags: np.ndarray, users: np.ndarray, lean: np.ndarray,
                            min_rows_per_genre: int = 10) -> float | None:
    """p-value that the window's errors lean by genre, within users, beyond the reference.

    A stratified permutation test in its normal form (see :func:`within_user_genre_sums`):
    ``S' Cov^-1 S`` is chi-square with as many degrees of freedom as the covariance has
    rank. Each user is compared only with itself, so a window of a few dozen users with
    very different error levels is judged fairly.

    The p-value is nominal: a user's errors also keep a personal genre lean the model did
    not learn, which the exchange ignores, so unchanged windows fall below a level more
    often than the level says (1.5% below 0.001 in the drift benchmark's worlds). Modelling
    that lean in the covariance makes the p-value exact but catches fewer taste shifts at
    the same false-alarm rate (``benchmarks/taste_shift_ceiling.py``); the monitor instead
    divides the statistic by the dispersion its backtest measures (:class:`Monitor`).

    Returns:
        The p-value, or ``None`` when no genre has ``min_rows_per_genre`` rows that vary within a user.
    """
    sums = within_user_genre_sums(errors, flags, users, lean, min_rows_per_genre)
    return None if sums is None else chi_square_p_value(*sums[:2])


def chi_square_p_value(statistic: np.ndarray, covariance: np.ndarray) -> float:
    """p-value of ``S' Cov^-1 S``, chi-square with the covariance's rank as degrees of freedom."""
    value, dof = chi_square_statistic(statistic, covariance)
    return float(stats.chi2.sf(value, dof))


def chi_square_statistic(statistic: np.ndarray, covariance: np.ndarray) -> tuple:
    """``(S' Cov^+ S, rank of Cov)``: the quadratic form and its degrees of freedom."""
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    # Genres that always come together (e.g. one movie's two genres) make it singular.
    rank = eigenvalues > 1e-8 * max(eigenvalues.max(), 1e-300)
    projected = eigenvectors[:, rank].T @ statistic
    return float((projected ** 2 / eigenvalues[rank]).sum()), int(rank.sum())


def genre_evidence(errors: np.ndarray, flags: np.ndarray, users: np.ndarray, lean: np.ndarray) -> dict | None:
    """The within-user genre sums of one window over every genre, with what sizes them.

    Returns:
        ``{"sums", "covariance", "gram", "rows"}``: ``S`` and its covariance as in
        :func:`within_user_genre_sums` and ``G'G`` of the centred flags (every genre, zeros
        where a genre did not vary), and how many rows vary within a user per genre; ``None``
        when no user has enough rows.
    """
    residual, genres, codes, counts, _, variance = _beyond_lean(errors, flags, users, lean, min_rows=3)
    if not len(residual):
        return None
    return {"sums": genres.T @ residual, "covariance": (genres * variance[codes][:, None]).T @ genres,
            "gram": genres.T @ genres, "rows": (np.abs(genres) > 1e-12).sum(axis=0)}


def _beyond_lean(errors: np.ndarray, flags: np.ndarray, users: np.ndarray, lean: np.ndarray, min_rows: int) -> tuple:
    """:func:`within_user` with the reference lean taken out, and each user's error variance
    (its mean was removed: n - 1): ``(residuals, genre_flags, codes, counts, users, variance)``."""
    residual, genres, codes, counts, kept_users = within_user(errors, flags, users, min_rows=min_rows, with_users=True)
    residual = residual - genres @ lean
    variance = np.bincount(codes, residual * residual, len(counts)) / (counts - 1)
    return residual, genres, codes, counts, kept_users, variance


def _user_grams(genres: np.ndarray, codes: np.ndarray, n_users: int) -> np.ndarray:
    """``G_u' G_u`` of each user's centred genre flags, stacked (users x genres x genres)."""
    grams = np.zeros((n_users, genres.shape[1], genres.shape[1]))
    np.add.at(grams, codes, genres[:, :, None] * genres[:, None, :])
    return grams


def personal_lean_spread(errors: np.ndarray, flags: np.ndarray, users: np.ndarray, lean: np.ndarray,
                         min_rows: int = 5) -> float:
    """Variance of a user's own genre lean around the reference lean, by moments.

    The model does not learn every user's taste: each keeps a personal lean by genre,
    which stays from one window to the next. For one user, ``E[S'S] = error variance x
    trace(G) + spread x trace(G G)`` with ``S = G' errors`` and ``G`` the Gram of its centred
    genre flags; summing both sides over users gives the spread (per genre, stars squared).
    """
    residual, genres, codes, counts, _, variance = _beyond_lean(errors, flags, users, lean, min_rows)
    if not len(residual):
        return 0.0
    sums = np.zeros((len(counts), genres.shape[1]))
    np.add.at(sums, codes, genres * residual[:, None])
    grams = _user_grams(genres, codes, len(counts))
    excess = float((sums * sums).sum() - (variance * np.trace(grams, axis1=1, axis2=2)).sum())
    scale = float(np.einsum("uij,uji->", grams, grams))
    return max(excess / scale, 0.0) if scale else 0.0


def genre_lean_change(evidence: dict, min_rows_per_genre: int = 10) -> tuple:
    """The test of genre evidence: ``(statistic, dof, largest lean change in stars)``.

    The statistic is the nominal chi-square of :func:`within_user_genre_sums`; what it
    leaves out (each user's own genre lean, which the model did not learn and which comes
    back window after window) is measured as a dispersion by the caller. The lean change is
    the least-squares estimate ``(G'G)^+ S`` of how much a user's error moved per genre (in
    stars), over the genres with enough varied rows: the size of a taste shift, beside its
    significance. ``(0, 0, 0)`` when no genre qualifies.
    """
    varied = evidence["rows"] >= min_rows_per_genre
    if not varied.any():
        return 0.0, 0, 0.0
    sums = evidence["sums"][varied]
    value, dof = chi_square_statistic(sums, evidence["covariance"][np.ix_(varied, varied)])
    change = np.linalg.pinv(evidence["gram"][np.ix_(varied, varied)]) @ sums
    return value, dof, float(np.abs(change).max())


# E[sup |Brownian bridge|^2]: the mean of n_eff * D^2 for a two-sample KS distance D under
# "no change" with independent rows (n_eff = n m / (n + m)).
KS_NULL_MEAN = np.pi ** 2 / 12


MIN_DISPERSION = 0.5


def dispersion(scaled_statistics) -> float:
    """How much more (or less) training windows vary than independent rows would: the mean
    of each window's statistic over its null mean.

    It can be below 1: the same users come back window after window and the pooled
    reference holds them, so windows resemble it more than independent draws would, and
    ties make a KS test conservative; a textbook p-value would then be too large (on the
    drift benchmark's unchanged windows, 1% of user-data-drift p-values fell below 0.05).
    It is kept at least ``MIN_DISPERSION`` so a few quiet training windows cannot make a
    test reckless.
    """
    values = [v for v in scaled_statistics if np.isfinite(v)]
    return max(MIN_DISPERSION, float(np.mean(values))) if values else 1.0


def independent_windows(windows: int, decay: float) -> int:
    """How many independent windows a series of running statistics is worth when measuring
    their mean: with earlier windows weighing ``decay`` each step, neighbouring quadratic
    statistics correlate by about ``decay^2``, so ``n`` of them count ``n (1 - d^2) / (1 + d^2)``."""
    return int(windows * (1 - decay ** 2) / (1 + decay ** 2))


def chi_square_calibrated(statistic: float, dof: int, dispersion_factor: float, windows: int = 0) -> float:
    """p-value of a chi-square statistic whose null is ``dispersion x chi2(dof)``.

    With ``windows`` (how many windows the dispersion was measured on) its uncertainty is
    counted too: ``(statistic / dof) / dispersion`` is then F-distributed with ``dof`` and
    ``windows x dof`` degrees of freedom, as a t-test counts an estimated variance.
    """
    if dof <= 0:
        return 1.0
    if windows <= 0:
        return float(stats.chi2.sf(statistic / dispersion_factor, dof))
    return float(stats.f.sf(statistic / dof / dispersion_factor, dof, windows * dof))


# The KS null statistic n_eff D^2 / KS_NULL_MEAN has variance 0.40 (E[K^4] = 7 pi^4 / 720),
# that of a chi-square with 5 degrees of freedom over 5: what one window tells of a dispersion.
KS_NULL_DOF = 5
_DISPERSION_QUANTILES = 16


def ks_calibrated(distance: float, rows: int, reference_rows: int, dispersion_factor: float, windows: int = 0) -> float:
    """p-value of a two-sample KS distance whose rows count ``dispersion`` times less than
    their number: the KS distribution at the effective size ``n m / (n + m)`` divided by the
    dispersion, by Stephens' approximation (within 3% of scipy's exact ``kstwo`` for
    p-values above 0.001, and a thousand times faster, which matters with the averaging).

    With ``windows``, the p-value is averaged over how uncertain a dispersion measured on
    that many windows is (scaled inverse chi-square quantiles, ``KS_NULL_DOF`` per window).
    """
    effective = rows * reference_rows / (rows + reference_rows)
    if windows <= 0:
        factors = np.array([dispersion_factor])
    else:
        dof = KS_NULL_DOF * windows
        factors = dispersion_factor * dof / stats.chi2.ppf((np.arange(_DISPERSION_QUANTILES) + 0.5) / _DISPERSION_QUANTILES, dof)
    root = np.sqrt(np.maximum(effective / factors, 1.0))
    return float(np.mean(special.kolmogorov((root + 0.12 + 0.11 / root) * distance)))


def z_calibrated(z: float, dispersion_factor: float, dof: int) -> float:
    """One-sided p-value of a z statistic whose variance is ``dispersion`` and was estimated
    with ``dof`` degrees of freedom (t distribution)."""
    return float(stats.t.sf(z / np.sqrt(dispersion_factor), max(dof, 1)))


def cluster_means(values: np.ndarray, clusters: np.ndarray) -> tuple:
    _, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, values)
    counts = np.bincount(inverse)
    return sums, counts


def cluster_z(values: np.ndarray, clusters: np.ndarray, expected: float) -> float:
    """(mean - expected) / cluster-robust standard error (clusters: users)."""
    mean = values.mean()
    sums, counts = cluster_means(values - mean, clusters)
    variance = (sums ** 2).sum() / len(values) ** 2
    g = len(counts)
    variance *= g / max(g - 1, 1)  # small-sample correction for few clusters
    return float((mean - expected) / np.sqrt(variance)) if variance > 0 else 0.0
