"""Ingest: copy the raw source (folder, .zip, URL, named download or simulated world) into the pipeline."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from reelops.components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(source: str, raw: Output[Dataset]) -> NamedTuple("Outputs", [("layout", str)]):
    """Fetch a raw MovieLens-layout source.

    Args:
        source: a folder, .zip, fsspec URL, ``movielens-100k``, or ``simulate:scenario=...,seed=...``.
        raw: the raw files, unchanged.

    Returns:
        layout: The layout found.
    """
    from reelops.steps import finish_task, ingest_raw

    info = ingest_raw(source, raw.path)
    raw.metadata.update(info)
    finish_task()
    return (info["layout"],)
