"""Gate: bless or reject the candidate against production (or baselines)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def gate(model: Input[Model], dataset: Input[Dataset], candidate: Output[Model]) -> str:
    """Compare the candidate with the production model and write its blessing.

    Args:
        model: the trained model directory.
        dataset: the dataset it was trained on.
        candidate: the model directory with ``blessing.json``.

    Returns:
        ``blessed`` or ``rejected``: the pipeline branches on it. One plain ``Output``, not a named
        output: kfp.local 2.17.3 cannot resolve a named output in a ``dsl.If`` condition
        ("Could not resolve parent input: gate-decision"), though Kubeflow can.
    """
    from reelops.steps import finish_task, gate_model

    info = gate_model(model.path, dataset.path, candidate.path)
    candidate.metadata.update({**model.metadata, **info})
    finish_task()
    return info["decision"]
