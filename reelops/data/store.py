"""The dataset store: where dataset versions live, named by an fsspec URL.

``REELOPS_STORE`` names it: ``s3://bucket/prefix``, ``gs://bucket/prefix``, a shared
``file:///folder`` or a plain path; the default is the workspace's ``datasets/`` folder.
A version is the folder ``<store>/<version>/`` (Parquet tables, quarantine, ingest
reports, and ``manifest.json``, which is written last: a folder with a manifest is a
complete version).

A local store is written in place. A remote store is written through a local copy: the
version is written in the workspace cache first, then uploaded file by file with
``manifest.json`` last, so a reader never finds a manifest before its tables. Reading a
version from a remote store downloads it once into the cache. On a cluster each pipeline
task is its own pod: the store is how one task finds a version another task wrote, and how
a retrain finds the training data of the model in production (the registry records the
store and the version of every model).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from pathlib import Path

from reelops.cluster import STORAGE_SECRET, NotConfigured, missing_in_pod, pod_name
from reelops.workspace import cache_dir, datasets_dir

STORE_VARIABLE = "REELOPS_STORE"
# Written beside a version's tables when it travels as a pipeline artifact: where it is kept.
LOCATION_FILE = "location.json"


class DatasetStoreNotConfigured(NotConfigured):
    """A pipeline step in a cluster pod has no dataset store (its versions would die with the pod)."""


class StoreError(OSError):
    """The dataset store cannot be read or written; the message names the URL and the cause."""


def normalize(url: str | os.PathLike) -> str:
    """A store URL: fsspec URLs as given (no trailing slash), paths as absolute ``file://`` URLs."""
    text = os.fspath(url).strip()
    if "://" in text:
        return text.rstrip("/")
    return Path(text).expanduser().absolute().as_uri()


def store_url() -> str:
    """``REELOPS_STORE``, else the workspace's ``datasets/`` folder.

    Raises:
        DatasetStoreNotConfigured: in a Kubeflow pod without ``REELOPS_STORE``: a version
            written to the pod's disk would be gone before the next task reads it.
    """
    chosen = os.environ.get(STORE_VARIABLE, "").strip()
    if chosen:
        return normalize(chosen)
    if pod_name():
        raise DatasetStoreNotConfigured(missing_in_pod(STORE_VARIABLE, STORAGE_SECRET))
    return datasets_dir().as_uri()


def local_folder(url: str) -> Path | None:
    """The folder of a local store (``file://`` URL or path); None for a remote one."""
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if "://" not in url:
        return Path(url)
    return None


def version_url(url: str, version: str) -> str:
    """Where a version lives in a store."""
    return f"{url.rstrip('/')}/{version}"


def writable_folder(url: str) -> Path:
    """The local folder a version is written into: the store itself, or a remote store's cache."""
    folder = local_folder(url)
    if folder is None:
        folder = cache_dir() / "stores" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _remote(url: str):
    from reelops.data.sources import SourceError, filesystem

    try:
        return filesystem(url)
    except SourceError as error:
        raise StoreError(str(error)) from error


def publish(folder: Path, url: str) -> bool:
    """Upload a version folder to a remote store (a local store is written in place).

    Files already in the store are kept: a version's tables are its content, so equal
    names hold equal bytes; new ingest reports are added. ``manifest.json`` goes last.

    Returns:
        True when this call completed the version in the store (its manifest was new).

    Raises:
        StoreError: the store refused or could not be reached.
    """
    if local_folder(url) is not None:
        return False
    target = version_url(url, folder.name)
    fs, root = _remote(target)
    files = sorted((path for path in folder.rglob("*") if path.is_file()
                    and not any(part.startswith(".") for part in path.relative_to(folder).parts)),
                   key=lambda path: path.name == "manifest.json")
    try:
        try:
            present = {entry.rstrip("/")[len(root.rstrip("/")) + 1:] for entry in fs.find(root)}
        except FileNotFoundError:
            present = set()
        uploaded_manifest = False
        for path in files:
            relative = path.relative_to(folder).as_posix()
            if relative in present:
                continue
            fs.put_file(str(path), f"{root}/{relative}")
            uploaded_manifest = uploaded_manifest or relative == "manifest.json"
    except Exception as error:  # fsspec backends (botocore, gcsfs) raise their own types
        raise StoreError(f"{target}: upload failed ({type(error).__name__}: {error})") from error
    return uploaded_manifest


def fetch(version: str, url: str) -> Path:
    """A version of a remote store as a local folder, downloaded once into the cache.

    Raises:
        FileNotFoundError: the store has no complete version of that id.
        StoreError: the store could not be read.
    """
    from reelops.staging import clean_stale, staging_folder

    cache = writable_folder(url)
    target = cache / version
    if (target / "manifest.json").is_file():
        return target
    source = version_url(url, version)
    fs, root = _remote(source)
    try:
        if not fs.exists(f"{root}/manifest.json"):
            raise FileNotFoundError(f"{version}: no such dataset version in the store {url}")
        clean_stale(cache, f"{version}-")
        with staging_folder(cache, f"{version}-") as staging:
            # The tables and the manifest; ingest reports stay in the store (loading needs none).
            names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(root, detail=False)]
            for name in sorted(names, key=lambda name: name == "manifest.json"):
                if name != "ingests":
                    fs.get_file(f"{root}/{name}", str(staging / name))
            os.rename(staging, target)
    except FileNotFoundError:
        raise
    except Exception as error:  # fsspec backends raise their own types
        if isinstance(error, OSError) and (target / "manifest.json").is_file():
            return target  # the rename lost to another process that put the same version in place
        raise StoreError(f"{source}: download failed ({type(error).__name__}: {error})") from error
    return target


def locate(version: str, store: str | os.PathLike | None = None) -> Path:
    """The local folder of a version id in a store (downloaded when the store is remote).

    Args:
        version: a dataset version id (``ds-...``).
        store: the store URL or folder; ``REELOPS_STORE`` or the workspace by default.

    Raises:
        FileNotFoundError: the store has no such version.
    """
    url = normalize(store) if store else store_url()
    folder = local_folder(url)
    if folder is None:
        return fetch(version, url)
    candidate = folder / version
    if not (candidate / "manifest.json").is_file():
        raise FileNotFoundError(f"{version}: not a dataset version id or version folder (no manifest.json; "
                                f"store {url})")
    return candidate


def write_location(folder: Path, url: str, version: str) -> None:
    """Record in a copy of a version (a pipeline artifact) the store it is kept in."""
    (Path(folder) / LOCATION_FILE).write_text(json.dumps({"store": url, "version": version}, sort_keys=True))


def location_of(data: str | os.PathLike, folder: Path) -> str:
    """The store that keeps a dataset, as recorded lineage.

    Args:
        data: what the user named: a version id, a version folder, or a pipeline artifact.
        folder: the local folder it resolved to.
    """
    recorded = Path(folder) / LOCATION_FILE
    if recorded.is_file():
        return json.loads(recorded.read_text())["store"]
    if not (Path(data) / "manifest.json").is_file():
        return store_url()  # a version id, resolved through the configured store
    return Path(folder).absolute().parent.as_uri()  # a version folder sits in its store
