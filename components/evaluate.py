"""Evaluate: metrics for the KFP UI and an HTML report it renders."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(model: Input[Model], dataset: Input[Dataset], dataset_version: str, metrics: Output[Metrics],
             report: Output[HTML]):
    """Score the model on its held-out rows.

    Args:
        model: the model directory.
        dataset: the dataset it was trained on (or another).
        dataset_version: its id (part of the cache key).
        metrics: RMSE, MAE, precision/recall/NDCG/MAP@10, coverage.
        report: the evaluation report with plots.
    """
    from reelops.steps import evaluate_model, finish_task

    for name, value in evaluate_model(model.path, dataset.path, report.path).items():
        metrics.log_metric(name.replace("@", "_at_"), value)
    metrics.metadata["dataset_version"] = dataset_version
    metrics.metadata["algorithm"] = model.metadata.get("algorithm", "")
    finish_task()
