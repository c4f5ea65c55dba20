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


# The largest MovieLens release (ml-32m) unpacks to under 1 GB; hostile input is refused
# above this before it is read or extracted.
DEFAULT_MAX_INPUT_BYTES = 4 << 30
# Text compresses about 3 to 10 times (ml-100k's u.data: 3.5x); a member that claims far
# more is a zip bomb or padding, not ratings.
MAX_COMPRESSION_RATIO = 100


def over_limit(what: str, size: int, cap: int) -> str:
    """The one message for input over the size limit (files, archives, downloads)."""
    return f"{what} is {size:,} bytes, over the input limit of {cap:,} bytes (--max-input-bytes or " \
           f"REELOPS_MAX_INPUT_BYTES raises it)"


def max_input_bytes() -> int:
    """The input size limit: ``REELOPS_MAX_INPUT_BYTES`` or :data:`DEFAULT_MAX_INPUT_BYTES`."""
    text = os.environ.get("REELOPS_MAX_INPUT_BYTES")
    if not text:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        value = int(text)
    except ValueError:
        raise SourceError(f"REELOPS_MAX_INPUT_BYTES={text!r} is not a whole number of bytes") from None
    if value <= 0:
        raise SourceError(f"REELOPS_MAX_INPUT_BYTES={text!r} must be positive")
    return value


def named_source_url(name: str) -> str:
    """The URL of a named source, honouring its override variable."""
    variable, default = NAMED_SOURCES[name]
    return os.environ.get(variable) or default


def resolve_source(source: str | os.PathLike, max_bytes: int | None = None) -> Path:
    """Turn any supported source into a local folder that holds one MovieLens layout.

    Args:
        source: a folder, a ``.zip`` file, an fsspec URL (``file://``, ``http(s)://``,
            ``s3://``, ``gs://``) of either, or a name from ``NAMED_SOURCES``.
        max_bytes: the most an archive may unpack to (default :func:`max_input_bytes`).

    Returns:
        A local folder with the layout's files.

    Raises:
        SourceError: the source does not exist, cannot be fetched, or needs an extra.
    """
    text = os.fspath(source)
    cap = max_input_bytes() if max_bytes is None else max_bytes
    if text in NAMED_SOURCES:
        text = named_source_url(text)
    if "://" in text and not text.startswith("file://"):
        return _find_layout_folder(_fetch_remote(text, cap), text)
    path = Path(text[len("file://"):] if text.startswith("file://") else text).expanduser()
    if not path.exists():
        raise SourceError(f"{text}: no such file or folder")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise SourceError(f"{text}: not a folder and not a .zip archive")
        return _find_layout_folder(_extract_zip(path, cap), text)
    return _find_layout_folder(path, text)


def _find_layout_folder(root: Path, shown: str) -> Path:
    """The folder under ``root`` (itself or one level of nesting, as GroupLens zips have)."""
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in candidates:
        if any((folder / marker).is_file() for marker in _MARKERS):
            return folder
    raise SourceError(f"{shown}: no MovieLens layout found (expected u.data, ratings.dat or ratings.csv)")


def _extract_zip(archive: Path, cap: int) -> Path:
    """Extract once per archive content (the cache key is the archive's hash), within ``cap`` bytes."""
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
            _check_members(archive, members, cap)
            budget = cap
            for member in members:
                budget -= _extract_member(bundle, member, staging, archive, budget)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.is_dir():  # another process may have won the race with the same content
                    raise
    except zipfile.BadZipFile as error:
        raise SourceError(f"{archive}: broken .zip archive ({error})") from error
    return target


def _check_members(archive: Path, members: list, cap: int) -> None:
    """Refuse an archive before extracting it: unsafe paths, too large, absurdly compressed."""
    total = 0
    for member in members:
        # A member path that escapes the folder is refused (zip slip).
        if member.filename.startswith("/") or ".." in Path(member.filename).parts:
            raise SourceError(f"{archive}: unsafe path {member.filename!r} in archive")
        total += member.file_size
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > 1 << 20 and ratio > MAX_COMPRESSION_RATIO:
            raise SourceError(f"{archive}: member {member.filename!r} unpacks {ratio:,.0f} times its compressed size "
                              f"({member.file_size:,} bytes); refusing it (ratings compress about 3 to 10 times)")
    if total > cap:
        raise SourceError(over_limit(f"{archive}: unpacked, it", total, cap))


def _extract_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path, archive: Path, budget: int) -> int:
    """Extract one member within ``budget`` bytes, counting what it really unpacks to (a header
    can lie about sizes); damage inside it (bad CRC, bad deflate data) is named in one line.

    Returns:
        The bytes written.
    """
    target = folder / member.filename
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with bundle.open(member) as source, open(target, "wb") as sink:
            for block in iter(lambda: source.read(1 << 20), b""):
                written += len(block)
                if written > budget:
                    raise SourceError(f"{archive}: member {member.filename!r} unpacks past the input limit")
                sink.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise SourceError(f"{archive}: member {member.filename!r} is damaged and cannot be read "
                          f"({type(error).__name__}: {error})") from error
    return written


def filesystem(url: str):
    """``(fsspec filesystem, path)`` of a URL; a missing backend names the extra that brings it.

    Raises:
        SourceError: the protocol needs an optional dependency, or the URL is not one fsspec reads.
    """
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


def _refuse_over_cap(fs, path: str, url: str, cap: int) -> None:
    """Refuse a remote file the store says is over the limit, before downloading it."""
    try:
        size = fs.size(path)
    except Exception:  # noqa: BLE001 - a server that will not say its size is checked after extraction
        return
    if size is not None and size > cap:
        raise SourceError(over_limit(url, size, cap))


def _fetch_remote(url: str, cap: int) -> Path:
    """Download a remote archive or folder into the cache, once (files over ``cap`` are refused)."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    target = cache_dir() / "downloads" / key
    if target.is_dir():
        archive = target / "source.zip"
        return _extract_zip(archive, cap) if archive.is_file() else target
    fs, path = filesystem(url)
    staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".download-"))
    try:
        try:
            # A .zip is a file: asking an HTTP server isdir() would download it once more.
            if not path.lower().endswith(".zip") and fs.isdir(path):
                for remote in fs.ls(path, detail=False):
                    name = remote.rstrip("/").rsplit("/", 1)[-1]
                    if fs.isfile(remote):
                        _refuse_over_cap(fs, remote, url, cap)
                        fs.get(remote, str(staging / name))
            else:
                _refuse_over_cap(fs, path, url, cap)
                fs.get(path, str(staging / "source.zip"))
        except SourceError:
            raise
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
    return _extract_zip(archive, cap) if archive.is_file() else target
