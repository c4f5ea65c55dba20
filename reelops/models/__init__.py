"""Recommenders behind one interface (training into a model directory is ``reelops.training``).

``import reelops.models`` does not import TensorFlow: the TensorFlow model is looked up
by name and its module imported only when it is used.
"""

from __future__ import annotations

import importlib


from reelops.models.base import (POPULARITY, PERSONAL, SIDE_FEATURES, Recommendations, Recommender, load_model,
                                 model_content_hash)
from reelops.models.tables import top_k_table

DEFAULT_ALGORITHM = "hybrid"

# name -> (module, class): modules are imported on first use.
ALGORITHMS = {
    "random": ("reelops.models.classic", "RandomScores"),
    "baseline": ("reelops.models.classic", "BiasBaseline"),
    "popularity": ("reelops.models.classic", "Popularity"),
    "sklearn-mf": ("reelops.models.classic", "MatrixFactorization"),
    "sklearn-svdpp": ("reelops.models.classic", "SVDPlusPlus"),
    "sklearn-ease": ("reelops.models.classic", "Ease"),
    "hybrid": ("reelops.models.classic", "Hybrid"),
    "tensorflow": ("reelops.models.tensorflow_model", "TensorFlowMF"),
}

__all__ = [
    "ALGORITHMS", "DEFAULT_ALGORITHM", "PERSONAL", "POPULARITY", "SIDE_FEATURES", "Recommendations",
    "Recommender", "algorithm_class", "load_model", "make_model", "model_content_hash", "top_k_table",
]


def algorithm_class(name: str):
    """The class of a named algorithm.

    Raises:
        ValueError: the name is not one of ``ALGORITHMS``.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
    module, attribute = ALGORITHMS[name]
    return getattr(importlib.import_module(module), attribute)


def make_model(name: str = DEFAULT_ALGORITHM, **parameters) -> Recommender:
    """A new, unfitted model of the named algorithm."""
    return algorithm_class(name)(**parameters)
