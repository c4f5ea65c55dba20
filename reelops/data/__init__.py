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
from reelops.data.lines import Quarantine, QuarantineFull
from reelops.data.sources import SourceError, max_input_bytes, over_limit, resolve_source
from reelops.data.splits import HOLDOUTS, holdout_split, kfold_split, leave_last_out_split, time_split, user_time_holdout
from reelops.data.validation import DataValidationError, ValidatedData, validate_tables
from reelops.data.versions import (content_hash, ingest_reports, load_dataset, record_ingest, resolve_dataset,
                                   write_version)

DEFAULT_MAX_BAD_SHARE = 0.01

__all__ = [
    "GENRES", "HOLDOUTS", "LAYOUTS", "DataValidationError", "IngestResult", "SourceError", "ValidatedData",
    "content_hash", "detect_layout", "holdout_split", "ingest", "ingest_reports", "kfold_split", "leave_last_out_split", "load_dataset",
    "resolve_dataset", "resolve_source", "time_split", "user_time_holdout", "validate_source",
]


def validate_source(
    source: str | os.PathLike, max_bad_share: float = DEFAULT_MAX_BAD_SHARE, on_stage=None,
    max_bytes: int | None = None,
) -> ValidatedData:
    """Read and check a raw source without writing anything.

    Args:
        source: a folder, ``.zip``, fsspec URL or named source (see :func:`resolve_source`).
        max_bad_share: the largest share of quarantined rows (over every file) accepted.
        on_stage: called with the name of each finished stage (for progress bars).
        max_bytes: the largest file (or extracted archive) accepted; default
            :func:`max_input_bytes`.

    Returns:
        The canonical tables, the quarantine and the counts.

    Raises:
        SourceError: the source cannot be read, or a file is over ``max_bytes``.
        DataValidationError: more rows are bad than ``max_bad_share`` allows.
    """
    check_share(max_bad_share, "max_bad_share")
    cap = max_input_bytes() if max_bytes is None else int(max_bytes)
    stage = on_stage or (lambda name: None)
    folder = resolve_source(source, max_bytes=cap)
    stage("fetch")
    # Past max_bad_share of every line, the share is over the limit whatever else the files
    # hold, so reading stops there (see Quarantine.bounded).
    quarantine = Quarantine.bounded(max_bad_share, _sizes_within(folder, source, cap))
    try:
        raw = read_layout(folder, quarantine)
        stage("read")
        validated = validate_tables(raw, quarantine)
    except QuarantineFull:
        _refuse(source, quarantine, len(quarantine.rows), quarantine.line_bound, max_bad_share, at_least=True)
    stage("validate")
    if validated.bad_share > max_bad_share:
        _refuse(source, validated.quarantine, validated.total_quarantined, validated.total_read, max_bad_share)
    if len(validated.ratings) == 0:
        ratings_file = LAYOUTS[validated.layout].ratings_file if validated.layout in LAYOUTS else "the ratings file"
        read = validated.counts.get(ratings_file, {}).get("read", 0)
        raise DataValidationError(f"{source}: {ratings_file} holds no valid rating ({read} rows read); "
                                  f"a dataset version needs at least one")
    return validated


def _refuse(source, quarantine: Quarantine, bad: int, read: int, max_bad_share: float, at_least: bool = False):
    reasons = ", ".join(f"{count} {reason}" for reason, count in quarantine.reasons().items())
    first = quarantine.rows[0]
    share, limit = percent_pair(bad / max(read, 1), max_bad_share)
    if at_least:
        counted = (f"{bad:,} of at most {read:,} rows are bad already ({share} > limit {limit}; "
                   f"reading stopped there)")
    else:
        counted = f"{bad} of {read} rows are bad ({share} > limit {limit})"
    raise DataValidationError(f"{source}: {counted}: {reasons}; first: {first['file']} line {first['line']}: "
                              f"{first['reason']}")


def _sizes_within(folder: Path, source, cap: int) -> dict:
    """Bytes of each file of the layout, refusing a file over ``cap`` before it is read."""
    sizes = {}
    for name in detect_layout(folder).files:
        sizes[name] = (folder / name).stat().st_size
        if sizes[name] > cap:
            raise SourceError(over_limit(f"{source}: {name}", sizes[name], cap))
    return sizes


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
    report: Path | None = None
    store: str = ""

    def to_dict(self) -> dict:
        """A JSON-able summary (what ``--json`` prints)."""
        return {
            "version": self.version,
            "path": str(self.path),
            "store": self.store,
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
            "report": str(self.report) if self.report else None,
            "sources": sorted({entry["source"] for entry in ingest_reports(self.path)}),
        }


def ingest(
    source: str | os.PathLike,
    store: str | os.PathLike | None = None,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
    on_stage=None,
    max_bytes: int | None = None,
    recorded_source: str | None = None,
) -> IngestResult:
    """Read, validate and version a source into ``<store>/<version>/``.

    Args:
        source: a folder, ``.zip``, fsspec URL or named source.
        store: the dataset store, a URL or folder (default ``REELOPS_STORE``, else the
            workspace's ``datasets/``).
        max_bad_share: the largest share of quarantined rows accepted.
        on_stage: called with the name of each finished stage (for progress bars).
        max_bytes: the largest file (or extracted archive) accepted.
        recorded_source: the source the manifest and the ingest report name, when
            ``source`` is a copy of it (a pipeline validates the ingest step's copy).

    Returns:
        The version id, its local folder, its store, its manifest and the validation details.
    """
    from reelops.data import store as stores
    from reelops.staging import clean_stale

    url = stores.normalize(store) if store else stores.store_url()
    validated = validate_source(source, max_bad_share=max_bad_share, on_stage=on_stage, max_bytes=max_bytes)
    # Staging folders of ingests that were killed: their writer no longer holds the lock.
    cleaned = clean_stale(stores.writable_folder(url))
    named = recorded_source or os.fspath(source)
    path, manifest, created = write_version(validated, source=named, store=url)
    report = record_ingest(path, named, validated, created)
    stores.publish(path, url)  # the run's report joins the version in a remote store
    if on_stage:
        on_stage("write")
    return IngestResult(version=manifest["version"], path=path, manifest=manifest, created=created, validated=validated,
                        cleaned=cleaned, report=report, store=url)
