"""Files written whole or not at all: one temporary name beside the target, renamed over it at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The start of every temporary name the zoo writes (``zoo cache prune`` removes those left by killed processes).
TEMP_PREFIX = ".tmp-"


def temporary_name(path: Path) -> Path:
    """A name beside ``path`` that no other process or call uses: ``.tmp-<pid>-<hex>-<name>``."""
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed over ``path`` (:func:`os.replace`) when the block ends
    without an error and removed otherwise, so that readers see the old file or the new one, never half of one."""
    temp = temporary_name(path)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
