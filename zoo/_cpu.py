"""What CPU this is: its model and feature flags, on which optimised graphs, compiled models and timings depend."""

from __future__ import annotations

import contextlib
import functools
import json
import platform
from pathlib import Path


@functools.cache
def cpu_signature() -> str:
    """The CPU's model name and feature flags (``/proc/cpuinfo``), else what :mod:`platform` says."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        found = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)
                 if key.strip() in ("model name", "flags", "Features", "CPU part")}
        if found:
            return json.dumps(found, sort_keys=True)
    return f"{platform.machine()} {platform.processor()}"
