"""Folders written under a hidden temporary name and renamed into place when complete.

A writer holds an exclusive ``flock`` on ``<staging>.lock`` for as long as it writes, so
a staging folder whose lock can be taken belongs to a writer that is gone (killed,
crashed): the next writer of the same kind removes it and says so. The kernel releases
the lock when a process dies, however it dies, so no pid bookkeeping is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path

SUFFIX = ".partial"
# A staging folder is created a moment before its lock: one younger than this without a
# lock file may be a writer between the two steps, and is left alone.
_GRACE_SECONDS = 60.0


def follow_umask(path: Path, directory: bool = True) -> None:
    """Give ``path`` the permissions a plain ``mkdir`` would (mkdtemp makes 0700).

    A dataset store or model folder shared by a team needs group and other read access
    wherever the umask grants it.
    """
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if directory else 0o666) & ~mask)


@contextlib.contextmanager
def staging_folder(parent: str | os.PathLike, prefix: str):
    """A hidden, locked folder in ``parent`` to write into; removed on exit unless renamed away.

    Args:
        parent: where the folder is made (the final folder's parent, so a rename is atomic).
        prefix: names the kind of writer; :func:`clean_stale` takes the same prefix.

    Yields:
        The staging folder's path.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f".{prefix}", suffix=SUFFIX))
    follow_umask(path)
    lock_path = path.with_name(path.name + ".lock")
    handle = open(lock_path, "w", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            lock_path.unlink()
        handle.close()


def clean_stale(parent: str | os.PathLike, prefix: str = "") -> list:
    """Remove the staging folders in ``parent`` whose writer no longer holds their lock.

    Returns:
        The paths removed (as strings), for the command to report.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for path in sorted(parent.glob(f".{prefix}*{SUFFIX}")):
        lock_path = path.with_name(path.name + ".lock")
        if not lock_path.exists():
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > _GRACE_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(str(path))
            continue
        with open(lock_path, "a", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # its writer is alive
                continue
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                lock_path.unlink()
            removed.append(str(path))
    return removed


def replace_folder(staging: Path, target: Path) -> None:
    """Move a complete staging folder to ``target``, replacing what was there in one rename.

    An existing ``target`` is first renamed aside (so a reader sees the old folder or the
    new one, never a mixture) and removed once the new one is in place.
    """
    target = Path(target)
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.rename(staging, target)
        return
    aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-old-"))
    aside.rmdir()
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
