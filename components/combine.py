"""Combine: the production model's training data plus the new data, for a retrain."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def combine_datasets(alias: str, new: Input[Dataset], dataset: Output[Dataset]) -> NamedTuple(
        "Outputs", [("dataset_version", str)]):
    """Union of the watched model's training data and the new data (newer ratings win).

    Args:
        alias: the registry alias of the model whose training data is extended.
        new: the new data.
        dataset: the combined dataset version.

    Returns:
        dataset_version: The combined dataset version id.
    """
    from reelops.steps import combine_datasets as work, finish_task

    info = work(alias, new.path, dataset.path)
    dataset.metadata.update(info)
    finish_task()
    return (info["dataset_version"],)
