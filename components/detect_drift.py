"""Detect drift: new data against the model under an alias, and the retraining decision."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def detect_drift(alias: str, dataset: Input[Dataset], min_new_labels: int, cooldown_days: float,
                 findings: Output[Metrics]) -> str:
    """Run every drift detector on the new data's windows and the retraining policy.

    Args:
        alias: the registry alias of the watched model.
        dataset: the new data (a dataset version).
        min_new_labels: the least new labelled ratings a retrain needs.
        cooldown_days: data time between two retrain triggers.
        findings: alarms per detector, windows, verdict counts.

    Returns:
        ``retrain`` or ``keep``: the pipeline branches on it. One plain ``Output``, not a named
        output: kfp.local 2.17.3 cannot resolve a named output in a ``dsl.If`` condition
        ("Could not resolve parent input: detect-drift-decision"), though Kubeflow can.
    """
    from reelops.monitoring import DETECTORS
    from reelops.steps import detect_drift as work, finish_task

    info = work(alias, dataset.path, min_new_labels, cooldown_days)
    for name in DETECTORS:
        findings.log_metric(f"{name}_alarms", info[f"{name}_alarms"])
    findings.metadata.update({k: v for k, v in info.items() if not k.endswith("_alarms")})
    finish_task()
    return info["retrain"]
