"""Data collection and preprocessing: MovieLens readers, validation, versions and splits.

Typical use::

    from reelops.data import ingest
    result = ingest("movielens-100k")      # or a folder, a .zip, an fsspec URL
    print(result.version, result.summary_rows())
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reelops.data.layouts import GENRES, LAYOUTS, detect_layout, read_layout
from reelops.data.lines import Quarantine
from reelops.data.sources import SourceError, resolve_source
from reelops.data.splits import kfold_split, leave_last_out_split, time_split, user_time_holdout
from reelops.data.validation import DataValidationError, ValidatedData, validate_tables
from reelops.data.versions import content_hash, load_dataset, resolve_dataset, write_version

DEFAULT_MAX_BAD_SHARE = 0.01

__all__ = [
    "GENRES", "LAYOUTS", "DataValidationError", "IngestResult", "SourceError", "ValidatedData",
    "content_hash", "detect_layout", "ingest", "kfold_split", "leave_last_out_split", "load_dataset",
    "resolve_dataset", "resolve_source", "time_split", "user_time_holdout", "validate_source",
]


def validate_source(
    source: str | os.PathLike, max_bad_share: float = DEFAULT_MAX_BAD_SHARE, on_stage=None
) -> ValidatedData:
    """Read and check a raw source without writing anything.

    Args:
        source: a folder, ``.zip``, fsspec URL or named source (see :func:`resolve_source`).
        max_bad_share: the largest share of quarantined rows (over every file) accepted.
        on_stage: called with the name of each finished stage (for progress bars).

    Returns:
        The canonical tables, the quarantine and the counts.

    Raises:
        SourceError: the source cannot be read.
        DataValidationError: more rows are bad than ``max_bad_share`` allows.
    """
    stage = on_stage or (lambda name: None)
    folder = resolve_source(source)
    stage("fetch")
    quarantine = Quarantine()
    raw = read_layout(folder, quarantine)
    stage("read")
    validated = validate_tables(raw, quarantine)
    stage("validate")
    if validated.bad_share > max_bad_share:
        reasons = ", ".join(f"{count} {reason}" for reason, count in validated.quarantine.reasons().items())
        first = validated.quarantine.rows[0]
        raise DataValidationError(
            f"{source}: {validated.total_quarantined} of {validated.total_read} rows are bad "
            f"({validated.bad_share:.1%} > limit {max_bad_share:.1%}): {reasons}; "
            f"first: {first['file']} line {first['line']}: {first['reason']}"
        )
    return validated


@dataclass
class IngestResult:
    """What an ingest wrote and found."""

    version: str
    path: Path
    manifest: dict
    created: bool
    validated: ValidatedData

    def to_dict(self) -> dict:
        """A JSON-able summary (what ``--json`` prints)."""
        return {
            "version": self.version,
            "path": str(self.path),
            "created": self.created,
            "layout": self.validated.layout,
            "counts": self.validated.counts,
            "read": self.validated.total_read,
            "valid": self.validated.total_read - self.validated.total_quarantined,
            "quarantined": self.validated.total_quarantined,
            "quarantine_reasons": self.validated.quarantine.reasons(),
            "warnings": self.validated.warnings,
            "time_range": self.manifest["time_range"],
        }


def ingest(
    source: str | os.PathLike,
    store: str | os.PathLike | None = None,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
    on_stage=None,
) -> IngestResult:
    """Read, validate and version a source into ``<store>/<version>/``.

    Args:
        source: a folder, ``.zip``, fsspec URL or named source.
        store: the folder of dataset versions (default: the workspace's ``datasets/``).
        max_bad_share: the largest share of quarantined rows accepted.
        on_stage: called with the name of each finished stage (for progress bars).

    Returns:
        The version id, its folder, its manifest and the validation details.
    """
    validated = validate_source(source, max_bad_share=max_bad_share, on_stage=on_stage)
    path, manifest, created = write_version(validated, source=os.fspath(source), store=store)
    if on_stage:
        on_stage("write")
    return IngestResult(version=manifest["version"], path=path, manifest=manifest, created=created, validated=validated)
