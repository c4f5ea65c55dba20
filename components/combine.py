"""Combine: the production model's training data plus the new data, for a retrain."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def combine_datasets(base_version: str, new: Input[Dataset], dataset: Output[Dataset]) -> str:
    """Union of two dataset versions (newer ratings win).

    Args:
        base_version: the dataset version of the production model.
        new: the new data.
        dataset: the combined dataset version.

    Returns:
        The combined dataset version id.
    """
    from reelops.steps import combine_datasets as work

    info = work(base_version, new.path, dataset.path)
    dataset.metadata.update(info)
    return info["dataset_version"]
