"""Register: the blessed model becomes a registry version; the registry picks its alias."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Input, Model

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(candidate: Input[Model], pipeline_name: str, run_id: str) -> NamedTuple(
        "Outputs", [("model_version", str)]):
    """Register a blessed model in MLflow with its lineage.

    Args:
        candidate: the blessed model directory.
        pipeline_name: recorded as lineage.
        run_id: the KFP run, recorded as lineage.

    Returns:
        model_version: The registered model version.
    """
    from reelops.steps import finish_task, register_model

    info = register_model(candidate.path, pipeline_name, run_id)
    print(f"registered version {info['model_version']} alias {info['alias'] or '(none)'}")
    finish_task()
    return (info["model_version"],)
