"""Messages to people about long work, through the ``zoo`` logger.

The zoo never configures logging: the ``zoo`` command attaches one handler to the ``zoo``
logger, and applications configure what they like. A Python user who configured nothing
would see no INFO line at all, and a first ``zoo.get`` that exports for a minute would look
like a hang; :func:`notice` prints to stderr in that one case.
"""

from __future__ import annotations

import logging
import sys


def notice(logger: logging.Logger, message: str, *args: object) -> None:
    """Log ``message`` at INFO, or print it on stderr when no logging is configured at all."""
    if logger.hasHandlers():
        logger.info(message, *args)
    else:
        print(f"zoo: {message % args if args else message}", file=sys.stderr, flush=True)
