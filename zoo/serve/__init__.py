"""``zoo serve``: the zoo's models over HTTP, and a web page to try them.

    pip install 'onnx-zoo[serve]'
    zoo serve resnet50 digits --port 8000

The application (:func:`create_app`) is Starlette served by uvicorn; it runs the same
``Model.predict`` as the library. ``openapi.json`` documents the endpoints; ``page/`` is the
web page at ``/`` (no file from elsewhere: it works offline). Concurrent requests for one
model are batched (:mod:`zoo.serve.batcher`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from zoo.serve.app import ModelLoadError, Settings, create_app

__all__ = ["ModelLoadError", "Settings", "create_app", "run"]


def run(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, load: Callable[..., Any] | None = None,
        log_level: str = "info") -> None:
    """Serve ``settings.models`` on ``host:port`` until SIGINT or SIGTERM (requests in flight are finished).

    ``load(name, runtime=, threads=, batch_size=)`` makes a model from its name (default ``zoo.get``). A model
    named in ``settings.models`` that cannot be loaded stops the server: :class:`ModelLoadError`, once it has
    stopped. A server that cannot start (its port taken) exits with status 3, as ``uvicorn.run`` does.
    """
    import uvicorn

    import zoo

    logging.getLogger("zoo.serve").setLevel(logging.INFO)
    server: uvicorn.Server

    def stop() -> None:
        server.should_exit = True

    app = create_app(settings, load or zoo.get, stop)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, log_level=log_level,
                                           timeout_graceful_shutdown=int(min(settings.timeout, 3600)) + 5))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE; its log said why
    if app.server.failure is not None:
        raise app.server.failure
