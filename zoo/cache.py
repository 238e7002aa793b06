"""Where the zoo keeps its files.

The cache root is ``ZOO_CACHE_DIR`` when set, else the user cache directory that
platformdirs gives for ``onnx-zoo`` (``~/.cache/onnx-zoo`` on Linux,
``~/Library/Caches/onnx-zoo`` on macOS, ``%LOCALAPPDATA%\\onnx-zoo\\Cache`` on Windows).
Each model has a folder of its own under ``models/``, named after its canonical name, which
:func:`zoo.spec.ModelSpec` restricts to characters that are safe in a file name::

    <root>/
      models/<name>/...          converted models and their metadata
      downloads/<sha256>-<file>  fetched weights and prebuilt files, named by their hash
      locks/<...>.lock           one lock file per thing being built (never deleted)

Writers hold the lock of what they build, write a temporary file beside the target and
commit it with :func:`os.replace`, so that a reader sees a whole file or none. The locks
are ``fcntl``/``LockFileEx`` locks (through filelock): the operating system releases them
when their process dies, so a killed process never blocks a later one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from platformdirs import user_cache_path

from zoo.errors import CacheLockTimeout

log = logging.getLogger(__name__)

#: Seconds a writer waits for another process's lock before giving up (``ZOO_LOCK_TIMEOUT``).
LOCK_TIMEOUT = 600.0
#: Seconds between "still waiting" messages.
LOCK_LOG_INTERVAL = 10.0


def cache_root() -> Path:
    """The root of the cache tree (not created by this call)."""
    override = os.environ.get("ZOO_CACHE_DIR", "").strip()
    return Path(override).expanduser() if override else user_cache_path("onnx-zoo", appauthor=False)


def model_dir(name: str) -> Path:
    """The folder that holds the cached files of the model with canonical ``name``."""
    return cache_root() / "models" / name


def cached_files(name: str) -> list[Path]:
    """The files cached for ``name``, sorted; empty if none."""
    folder = model_dir(name)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def download_path(filename: str, sha256: str) -> Path:
    """Where a fetched file with this name and (prefix of a) sha256 is kept."""
    return cache_root() / "downloads" / f"{sha256}-{Path(filename).name}"


@contextmanager
def locked(target: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the inter-process lock of ``target`` (a path in the cache) for the ``with`` block.

    Logs while it waits and raises :class:`~zoo.errors.CacheLockTimeout` after ``timeout``
    seconds (default :data:`LOCK_TIMEOUT`, or ``ZOO_LOCK_TIMEOUT``).
    """
    if timeout is None:
        timeout = float(os.environ.get("ZOO_LOCK_TIMEOUT", LOCK_TIMEOUT))
    digest = hashlib.sha256(target.resolve().as_posix().encode()).hexdigest()[:16]
    lock_file = cache_root() / "locks" / f"{digest}-{target.name}.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file)
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire(timeout=max(0.0, min(LOCK_LOG_INTERVAL, deadline - time.monotonic())))
            break
        except Timeout:
            if time.monotonic() >= deadline:
                raise CacheLockTimeout(
                    f"another process has held the lock on {target} for over {timeout:.0f} s; if no other zoo "
                    f"process is running, try again, or raise ZOO_LOCK_TIMEOUT"
                ) from None
            log.warning("waiting for another process to finish %s (lock %s)", target.name, lock_file)
    try:
        yield
    finally:
        lock.release()
