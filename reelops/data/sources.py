"""Where raw MovieLens data comes from: a folder, a .zip, an fsspec URL, or a named download.

Every source is turned into a local folder holding one layout. Remote sources are fetched
once into the workspace cache (keyed by URL), so a second ingest works offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from reelops.staging import clean_stale, staging_folder
from reelops.workspace import cache_dir

# Named sources: a user can say `movielens-100k` instead of the GroupLens URL.
NAMED_SOURCES = {
    "movielens-100k": ("REELOPS_MOVIELENS_100K_URL", "https://files.grouplens.org/datasets/movielens/ml-100k.zip"),
    "movielens-1m": ("REELOPS_MOVIELENS_1M_URL", "https://files.grouplens.org/datasets/movielens/ml-1m.zip"),
    "movielens-latest-small": (
        "REELOPS_MOVIELENS_LATEST_SMALL_URL",
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
    ),
}

# fsspec protocols that need an optional extra, and the extra that brings them.
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
_MARKERS = ("u.data", "ratings.dat", "ratings.csv")


class SourceError(OSError):
    """A source cannot be read; the message says which and why."""


def named_source_url(name: str) -> str:
    """The URL of a named source, honouring its override variable."""
    variable, default = NAMED_SOURCES[name]
    return os.environ.get(variable) or default


def resolve_source(source: str | os.PathLike) -> Path:
    """Turn any supported source into a local folder that holds one MovieLens layout.

    Args:
        source: a folder, a ``.zip`` file, an fsspec URL (``file://``, ``http(s)://``,
            ``s3://``, ``gs://``) of either, or a name from ``NAMED_SOURCES``.

    Returns:
        A local folder with the layout's files.

    Raises:
        SourceError: the source does not exist, cannot be fetched, or needs an extra.
    """
    text = os.fspath(source)
    if text in NAMED_SOURCES:
        text = named_source_url(text)
    if "://" in text and not text.startswith("file://"):
        return _find_layout_folder(_fetch_remote(text), text)
    path = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()
    if not path.exists():
        raise SourceError(f"{text}: no such file or folder")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise SourceError(f"{text}: not a folder and not a .zip archive")
        return _find_layout_folder(_extract_zip(path), text)
    return _find_layout_folder(path, text)


def _find_layout_folder(root: Path, shown: str) -> Path:
    """The folder under ``root`` (itself or one level of nesting, as GroupLens zips have)."""
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in candidates:
        if any((folder / marker).is_file() for marker in _MARKERS):
            return folder
    raise SourceError(f"{shown}: no MovieLens layout found (expected u.data, ratings.dat or ratings.csv)")


def _extract_zip(archive: Path) -> Path:
    """Extract once per archive content; the cache key is the archive's hash."""
    digest = hashlib.sha256()
    with open(archive, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    target = cache_dir() / "extracted" / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    clean_stale(cache_dir(), "extract-")
    try:
        with staging_folder(cache_dir(), "extract-") as staging, zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                # A member path that escapes the folder is refused (zip slip).
                if member.filename.startswith("/") or ".." in Path(member.filename).parts:
                    raise SourceError(f"{archive}: unsafe path {member.filename!r} in archive")
            for member in members:
                _extract_member(bundle, member, staging, archive)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.is_dir():  # another process may have won the race with the same content
                    raise
    except zipfile.BadZipFile as error:
        raise SourceError(f"{archive}: broken .zip archive ({error})") from error
    return target


def _extract_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path, archive: Path) -> None:
    """Extract one member; damage inside it (bad CRC, bad deflate data) is named in one line."""
    try:
        bundle.extract(member, folder)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise SourceError(f"{archive}: member {member.filename!r} is damaged and cannot be read "
                          f"({type(error).__name__}: {error})") from error


def _filesystem(url: str):
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:
        extra = _EXTRAS.get(protocol)
        hint = f"pip install 'reelops[{extra}]'" if extra else f"install the fsspec backend for {protocol}://"
        raise SourceError(f"{url}: reading {protocol}:// needs an optional dependency: {hint}") from error
    except ValueError as error:
        raise SourceError(f"{url}: unsupported URL ({error})") from error


def _fetch_remote(url: str) -> Path:
    """Download a remote archive or folder into the cache, once."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    target = cache_dir() / "downloads" / key
    if target.is_dir():
        archive = target / "source.zip"
        return _extract_zip(archive) if archive.is_file() else target
    fs, path = _filesystem(url)
    staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".download-"))
    try:
        try:
            # A .zip is a file: asking an HTTP server isdir() would download it once more.
            if not path.lower().endswith(".zip") and fs.isdir(path):
                for remote in fs.ls(path, detail=False):
                    name = remote.rstrip("/").rsplit("/", 1)[-1]
                    if fs.isfile(remote):
                        fs.get(remote, str(staging / name))
            else:
                fs.get(path, str(staging / "source.zip"))
        except ImportError as error:
            raise SourceError(f"{url}: {error}") from error
        except Exception as error:  # fsspec backends (aiohttp, botocore) raise their own types
            raise SourceError(f"{url}: download failed ({type(error).__name__}: {error})") from error
        archive = staging / "source.zip"
        if archive.is_file() and not zipfile.is_zipfile(archive):
            raise SourceError(f"{url}: downloaded file is not a .zip archive")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive = target / "source.zip"
    return _extract_zip(archive) if archive.is_file() else target
