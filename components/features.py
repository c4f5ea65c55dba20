"""Engineer features: the user and movie tables training and serving share."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def engineer_features(dataset: Input[Dataset], dataset_version: str, holdout: str, features: Output[Dataset]):
    """Compute user and movie features from the training split.

    Args:
        dataset: the dataset version.
        dataset_version: its id (part of the cache key).
        holdout: the split training will use.
        features: user_features.parquet, movie_features.parquet and features.json (the
            dataset version and split they were computed from); the train step fits on them.
    """
    from reelops.steps import engineer_features as work, finish_task

    features.metadata.update(work(dataset.path, features.path, holdout))
    finish_task()
