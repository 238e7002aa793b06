"""The zoo's settings from its environment variables, read in one place (each when it is used, so a change to the
environment takes effect at once; a value that does not parse is a :class:`~zoo.errors.UsageError` naming it).

``ZOO_CACHE_DIR`` (the cache's root), ``ZOO_OFFLINE`` (no network), ``ZOO_MIRROR`` (a base URL to fetch files
from), ``ZOO_MAX_PIXELS`` (the largest image decoded), ``ZOO_LOCK_TIMEOUT`` (seconds to wait for another
process's build). Which plugins load (``ZOO_LOAD_PLUGINS``, ``ZOO_DISABLE_PLUGIN_AUTOLOAD``) is read by
:meth:`zoo.plugins.Selection.from_env`, from a mapping a test can pass, with :func:`env_flag`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from zoo.errors import UsageError

TRUE_VALUES = ("1", "true", "yes", "on")
#: Largest image, in pixels, that is decoded (100 megapixels) unless ``ZOO_MAX_PIXELS`` says otherwise.
MAX_PIXELS = 100_000_000


def text(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable ``name``, stripped ("" when unset)."""
    return (os.environ if environ is None else environ).get(name, "").strip()


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the variable ``name`` is set to a true value (1, true, yes, on; any case)."""
    return text(name, environ).lower() in TRUE_VALUES


def cache_dir() -> Path | None:
    """``ZOO_CACHE_DIR``, or None to use the user cache directory."""
    value = text("ZOO_CACHE_DIR")
    return Path(value).expanduser() if value else None


def offline() -> bool:
    """Whether ``ZOO_OFFLINE`` forbids network access."""
    return env_flag("ZOO_OFFLINE")


def mirror() -> str:
    """``ZOO_MIRROR``: the base URL that replaces each download's URL but its file name ("" when unset)."""
    return text("ZOO_MIRROR")


def max_pixels() -> int:
    """The pixel cap in force: ``ZOO_MAX_PIXELS`` (a number of pixels) or :data:`MAX_PIXELS`."""
    value = text("ZOO_MAX_PIXELS").replace("_", "").replace(",", "")
    if not value:
        return MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"ZOO_MAX_PIXELS must be a positive whole number of pixels (e.g. 200000000), got "
                         f"{os.environ['ZOO_MAX_PIXELS']!r}")
    return int(value)


def lock_timeout() -> float | None:
    """``ZOO_LOCK_TIMEOUT`` in seconds, or None (the default: wait as long as the holder lives)."""
    value = text("ZOO_LOCK_TIMEOUT")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"ZOO_LOCK_TIMEOUT must be a number of seconds greater than 0, got {value!r}; unset it to "
                         f"wait as long as the other process is working")
    return seconds
