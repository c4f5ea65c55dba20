"""Batch predict: top-K for every user from the model under an alias."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def batch_predict(alias: str, k: int, predictions: Output[Dataset]) -> NamedTuple("Outputs", [("model_version", str)]):
    """Write recommendations of every user as Parquet.

    Args:
        alias: the registry alias (``production``, ``canary``, ``previous``).
        k: recommendations per user.
        predictions: user_id, rank, movie_id, score, path, model_version.

    Returns:
        model_version: The model version that scored.
    """
    from reelops.steps import batch_predict as work, finish_task

    info = work(alias, k, predictions.path)
    predictions.metadata.update(info)
    finish_task()
    return (info["model_version"],)
