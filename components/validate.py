"""Validate: quarantine bad rows and write the dataset version."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate(raw: Input[Dataset], max_bad_share: float, dataset: Output[Dataset]) -> NamedTuple(
        "Outputs", [("dataset_version", str)]):
    """Validate raw files and write the canonical dataset version.

    Args:
        raw: the ingested raw files.
        max_bad_share: fail when more rows than this share are bad.
        dataset: the dataset version (Parquet tables, manifest, quarantine).

    Returns:
        dataset_version: The dataset version id (the cache key of the steps after it).
    """
    from reelops.steps import finish_task, validate_raw

    info = validate_raw(raw.path, dataset.path, max_bad_share, source=raw.metadata.get("source", ""))
    dataset.metadata.update(info)
    finish_task()
    return (info["dataset_version"],)
