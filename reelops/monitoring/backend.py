"""The drift-test backend: Alibi Detect behind a small interface.

Alibi Detect 0.12+ is under the Business Source License 1.1, so reelops keeps it behind
:class:`DriftBackend`; an open-source backend (scipy's tests) can replace it without
touching the monitors. Only Alibi Detect's numpy/scipy detectors are used (TabularDrift,
KSDrift, ChiSquareDrift), so TensorFlow is kept out of the import: importing
``alibi_detect`` otherwise loads TensorFlow (several seconds per process).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

_alibi = None


def alibi():
    """The alibi_detect names reelops uses, imported without TensorFlow."""
    global _alibi
    if _alibi is not None:
        return _alibi
    import logging
    import os

    # transformers (imported by alibi-detect's saving module) and alibi-detect's saver talk
    # to stderr about things that do not concern a drift check.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger("alibi_detect").setLevel(logging.ERROR)
    # alibi-detect enables its TensorFlow backend when tensorflow and tensorflow_probability
    # import; hiding both for the import keeps it on numpy/scipy and saves seconds. When
    # TensorFlow is already loaded (training the TensorFlow model) it is hidden too and put
    # back afterwards: with TensorFlow visible but tensorflow_probability not, alibi-detect
    # half-enables its TensorFlow parts and fails.
    hidden = {name: sys.modules.get(name) for name in ("tensorflow", "tensorflow_probability")}
    for name in hidden:
        sys.modules[name] = None
    try:
        from alibi_detect.cd import ChiSquareDrift, KSDrift, TabularDrift
        from alibi_detect.saving import load_detector, save_detector
    except ImportError as error:
        raise ImportError(f"monitoring needs alibi-detect (pip install 'alibi-detect==0.13.0'): {error}") from error
    finally:
        for name, module in hidden.items():
            if module is not None:
                sys.modules[name] = module
            elif sys.modules.get(name, 0) is None:
                del sys.modules[name]  # a later import of it in this process must still work
    _alibi = {"TabularDrift": TabularDrift, "KSDrift": KSDrift, "ChiSquareDrift": ChiSquareDrift,
              "save_detector": save_detector, "load_detector": load_detector}
    return _alibi


class DriftBackend:
    """What a monitor needs from a drift library: a feature-wise test, saved and reloaded."""

    def tabular(self, reference: np.ndarray, categorical: dict, p_val: float):
        """A detector comparing windows with ``reference`` column by column.

        Args:
            reference: (rows, features) float array; categorical columns hold integer codes.
            categorical: ``{column: number of categories}`` for categorical columns.
            p_val: the family-wise level (Bonferroni over features).
        """
        raise NotImplementedError

    def predict(self, detector, window: np.ndarray) -> dict:
        """``{"is_drift": bool, "p_val": per-feature p-values, "distance": per-feature statistics,
        "threshold": float}``: the textbook p-values (independent rows) and the statistics
        behind them (chi-square for categorical features, the KS distance for numeric ones),
        which the monitor calibrates against training windows."""
        raise NotImplementedError

    def save(self, detector, folder: Path) -> None:
        raise NotImplementedError

    def load(self, folder: Path):
        raise NotImplementedError


class AlibiBackend(DriftBackend):
    """Alibi Detect's TabularDrift: KS for numeric features, chi-square for categorical ones."""

    def tabular(self, reference, categorical, p_val):
        return alibi()["TabularDrift"](
            reference.astype(np.float32), p_val=p_val, categories_per_feature={int(k): int(v) for k, v in categorical.items()},
            correction="bonferroni",
        )

    def predict(self, detector, window):
        result = detector.predict(window.astype(np.float32), drift_type="feature", return_p_val=True,
                                  return_distance=True)["data"]
        p_values = np.asarray(result["p_val"], dtype=float)
        return {"is_drift": bool(np.any(np.asarray(result["is_drift"]))), "p_val": p_values,
                "distance": np.asarray(result["distance"], dtype=float), "threshold": float(result["threshold"])}

    def save(self, detector, folder):
        alibi()["save_detector"](detector, str(folder))

    def load(self, folder):
        return alibi()["load_detector"](str(folder))


DEFAULT_BACKEND = AlibiBackend()
