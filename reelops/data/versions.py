"""Dataset versions: a deterministic content hash of the canonical tables and a manifest.

A version folder is written under a temporary name and renamed into place, so a failed
ingest never leaves a half-written version behind, and the same input always lands in
the same ``<store>/<version>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from reelops.data import store as stores
from reelops.staging import staging_folder

SCHEMA_VERSION = 1
TABLES = ("ratings", "users", "movies")


def content_hash(ratings: pd.DataFrame, users: pd.DataFrame, movies: pd.DataFrame) -> str:
    """SHA-256 of the canonical tables: column names, dtypes and values, in order.

    Numbers are hashed as fixed-width little-endian bytes and text as UTF-8, so the hash
    depends on the data only, not on the pandas or Parquet version that wrote it.
    """
    digest = hashlib.sha256(f"reelops-dataset-schema-{SCHEMA_VERSION}".encode())
    for name, frame in zip(TABLES, (ratings, users, movies)):
        digest.update(f"\x1e{name}:{len(frame)}".encode())
        for column in frame.columns:
            series = frame[column]
            digest.update(f"\x1f{column}".encode())
            if isinstance(series.dtype, pd.Int64Dtype):
                digest.update(series.isna().to_numpy().tobytes())
                digest.update(series.fillna(0).to_numpy(np.int64).astype("<i8").tobytes())
            elif series.dtype.kind in "iuf":
                digest.update(series.to_numpy().astype(series.dtype.newbyteorder("<")).tobytes())
            else:
                digest.update("\x00".join(series.astype(str).tolist()).encode("utf-8"))
    return digest.hexdigest()


def version_id(full_hash: str) -> str:
    """The short, human-usable version id of a content hash."""
    return f"ds-{full_hash[:16]}"


def write_version(validated, source: str, store: str | os.PathLike | None = None) -> tuple:
    """Write a validated dataset as a version folder.

    Args:
        validated: a :class:`reelops.data.validation.ValidatedData`.
        source: where the data came from (recorded in the manifest).
        store: the dataset store (URL or folder); ``REELOPS_STORE`` or the workspace's
            ``datasets/`` by default. A remote store gets the version uploaded.

    Returns:
        ``(local version folder, manifest dict, created)``; ``created`` is False when the
        same version already existed (same content), in which case nothing is rewritten.
    """
    url = stores.normalize(store) if store else stores.store_url()
    folder, created = _write_local(validated, source, stores.writable_folder(url))
    if stores.local_folder(url) is None:
        created = stores.publish(folder, url)
    return folder, json.loads((folder / "manifest.json").read_text()), created


def _write_local(validated, source: str, store: Path) -> tuple:
    """Write the version folder into a local folder of versions: ``(folder, created)``."""
    full_hash = content_hash(validated.ratings, validated.users, validated.movies)
    version = version_id(full_hash)
    target = store / version
    ratings = validated.ratings
    manifest = {
        "version": version,
        "content_hash": full_hash,
        "schema_version": SCHEMA_VERSION,
        "source": source,
        "layout": validated.layout,
        "counts": validated.counts,
        "rows": {"ratings": len(ratings), "users": len(validated.users), "movies": len(validated.movies)},
        "time_range": {
            "min_timestamp": int(ratings["timestamp"].min()) if len(ratings) else None,
            "max_timestamp": int(ratings["timestamp"].max()) if len(ratings) else None,
        },
        "quarantined": validated.total_quarantined,
        "quarantine_reasons": validated.quarantine.reasons(),
        "warnings": validated.warnings,
    }
    if (target / "manifest.json").is_file():
        return target, False
    with staging_folder(store, f"{version}-") as staging:
        # Timestamps are nearly all distinct: trying a dictionary for them only costs time.
        validated.ratings.to_parquet(staging / "ratings.parquet", index=False,
                                     use_dictionary=["user_id", "movie_id", "rating"])
        validated.users.to_parquet(staging / "users.parquet", index=False)
        validated.movies.to_parquet(staging / "movies.parquet", index=False)
        pd.DataFrame(validated.quarantine.rows, columns=["file", "line", "reason", "raw"]).to_csv(
            staging / "quarantine.csv", index=False
        )
        # The manifest goes last: a folder with a manifest is a complete version.
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "manifest.json").is_file():
                raise
            return target, False
    return target, True


def record_ingest(version_folder: Path, source: str, validated, created: bool) -> Path:
    """Keep one ingest run's own report in ``<version>/ingests/<run>/``, even when the version existed.

    Two sources can hold the same valid ratings (one of them with 50 extra bad lines): they
    make one version, and each run's quarantine and source are kept here, so no report is
    lost and the version lists every source that produced it.

    Returns:
        The run's folder (``report.json`` and ``quarantine.csv``).
    """
    import datetime as dt
    import uuid

    from reelops.staging import clean_stale

    runs = Path(version_folder) / "ingests"
    clean_stale(runs)
    now = dt.datetime.now(dt.timezone.utc)
    report = {
        "source": source, "time": now.isoformat(timespec="seconds"), "created_version": created,
        "layout": validated.layout, "counts": validated.counts, "read": validated.total_read,
        "quarantined": validated.total_quarantined, "quarantine_reasons": validated.quarantine.reasons(),
        "warnings": validated.warnings,
    }
    target = runs / f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    with staging_folder(runs, "run-") as staging:
        pd.DataFrame(validated.quarantine.rows, columns=["file", "line", "reason", "raw"]).to_csv(
            staging / "quarantine.csv", index=False)
        (staging / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        os.rename(staging, target)
    return target


def ingest_reports(version_folder: Path) -> list:
    """Every ingest run's report of a version, oldest first (``path`` added)."""
    runs = Path(version_folder) / "ingests"
    reports = []
    for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
        if not folder.name.startswith(".") and (folder / "report.json").is_file():
            reports.append({**json.loads((folder / "report.json").read_text()), "path": str(folder)})
    return reports


def resolve_dataset(dataset: str | os.PathLike, store: str | os.PathLike | None = None) -> Path:
    """A dataset version folder from a version id (looked up in the store) or a folder path.

    Args:
        dataset: a version id, or a version folder (``manifest.json`` inside).
        store: the dataset store; ``REELOPS_STORE`` or the workspace by default.

    Raises:
        FileNotFoundError: neither a folder with a manifest nor a version in the store.
    """
    path = Path(dataset)
    if (path / "manifest.json").is_file():
        return path
    if path.exists() or os.sep in str(dataset):
        raise FileNotFoundError(f"{dataset}: not a dataset version folder (no manifest.json)")
    return stores.locate(str(dataset), store)


def load_dataset(dataset: str | os.PathLike, store: str | os.PathLike | None = None) -> dict:
    """Load a dataset version: ``{"ratings", "users", "movies", "manifest", "path"}``."""
    folder = resolve_dataset(dataset, store)
    return {
        "ratings": pd.read_parquet(folder / "ratings.parquet"),
        "users": pd.read_parquet(folder / "users.parquet"),
        "movies": pd.read_parquet(folder / "movies.parquet"),
        "manifest": json.loads((folder / "manifest.json").read_text()),
        "path": folder,
    }
