"""Data collection and preprocessing: MovieLens readers, validation, versions and splits.

Typical use::

    from reelops.data import ingest
    result = ingest("movielens-100k")      # or a folder, a .zip, an fsspec URL
    print(result.version, result.summary_rows())
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    check_share(max_bad_share, "max_bad_share")
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
        share, limit = percent_pair(validated.bad_share, max_bad_share)
        raise DataValidationError(
            f"{source}: {validated.total_quarantined} of {validated.total_read} rows are bad "
            f"({share} > limit {limit}): {reasons}; "
            f"first: {first['file']} line {first['line']}: {first['reason']}"
        )
    if len(validated.ratings) == 0:
        ratings_file = LAYOUTS[validated.layout].ratings_file if validated.layout in LAYOUTS else "the ratings file"
        read = validated.counts.get(ratings_file, {}).get("read", 0)
        raise DataValidationError(f"{source}: {ratings_file} holds no valid rating ({read} rows read); "
                                  f"a dataset version needs at least one")
    return validated


def check_share(value: float, name: str) -> float:
    """A share between 0 and 1; NaN or anything outside is refused (it would switch a check off).

    Raises:
        ValueError: naming the parameter and the value.
    """
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a share between 0 and 1, not {value!r}")
    return float(value)


def percent_pair(value: float, limit: float) -> tuple:
    """Both numbers as percentages with just enough digits to show that ``value > limit``."""
    for digits in range(1, 10):
        shown, shown_limit = f"{value:.{digits}%}", f"{limit:.{digits}%}"
        if shown != shown_limit:
            return shown, shown_limit
    return f"{value:.10%}", f"{limit:.10%}"


@dataclass
class IngestResult:
    """What an ingest wrote and found."""

    version: str
    path: Path
    manifest: dict
    created: bool
    validated: ValidatedData
    cleaned: list = field(default_factory=list)

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
            "cleaned": self.cleaned,
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
    from reelops.staging import clean_stale
    from reelops.workspace import datasets_dir

    validated = validate_source(source, max_bad_share=max_bad_share, on_stage=on_stage)
    # Staging folders of ingests that were killed: their writer no longer holds the lock.
    cleaned = clean_stale(Path(store) if store else datasets_dir())
    path, manifest, created = write_version(validated, source=os.fspath(source), store=store)
    if on_stage:
        on_stage("write")
    return IngestResult(version=manifest["version"], path=path, manifest=manifest, created=created, validated=validated,
                        cleaned=cleaned)
