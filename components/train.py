"""Train: fit the recommender (algorithm as a parameter) into a model directory."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(dataset: Input[Dataset], features: Input[Dataset], dataset_version: str, algorithm: str, holdout: str,
          parameters_json: str, model: Output[Model]):
    """Fit a model with its evaluation and monitoring reference.

    Args:
        dataset: the dataset version.
        features: the features step's tables, which the model is fitted on.
        dataset_version: its id (part of the cache key).
        algorithm: one of reelops.models.ALGORITHMS.
        holdout: ``user-time-20`` or ``none``.
        parameters_json: algorithm parameters as a JSON object.
        model: the model directory.
    """
    from reelops.steps import finish_task, train_model

    model.metadata.update(train_model(dataset.path, model.path, algorithm, holdout, parameters_json, features.path))
    finish_task()
