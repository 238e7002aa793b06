"""Reading the zoo's environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

TRUE_VALUES = ("1", "true", "yes", "on")


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the variable ``name`` is set to a true value (1, true, yes, on; any case)."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() in TRUE_VALUES
