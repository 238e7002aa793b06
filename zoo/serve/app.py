"""The server's ASGI application: routes, errors, limits and metrics over ``Model.predict``."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import zoo
from zoo import images
from zoo.errors import AmbiguousModelError, UnknownModelError, UsageError, ZooError, ZooInputError
from zoo.registry import default_registry
from zoo.results import jsonable
from zoo.serve.admission import Busy, PixelBudget, Slots
from zoo.serve.batcher import Batcher
from zoo.serve.models import Served, from_text
from zoo.spec import ModelSpec
from zoo.tasks import merge_options, options_from_text

log = logging.getLogger("zoo.serve")

PAGE = resources.files("zoo.serve") / "page"
OPENAPI = resources.files("zoo.serve") / "openapi.json"


@dataclass(frozen=True)
class Settings:
    """What ``zoo serve`` was asked for (see ``zoo serve --help``)."""

    #: The models loaded at start: :class:`~zoo.serve.models.Served`, or as ``zoo serve`` takes them
    #: (``resnet50``, ``resnet50=ft.pth``, ``NAME/KEY``, ``model.onnx``, ``ALIAS=model.onnx``).
    models: tuple[str | Served, ...] = ()
    on_demand: bool = False
    max_batch_size: int = 1
    max_wait_ms: float = 0.0
    max_queue: int = 64
    max_body: int = 20 * 1024 * 1024
    timeout: float = 30.0
    body_timeout: float = 30.0
    max_receiving: int = 32
    max_pixels_in_flight: int = 100_000_000
    token: str | None = None
    runtime: str = "onnxruntime"
    threads: int | None = None


class ModelLoadError(ZooError, RuntimeError):
    """A model named at start cannot be loaded: the server stops, and ``zoo serve`` ends with this error."""


class HTTPError(Exception):
    """An answer other than 200: its status, message and headers."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers, self.extra = status, kind, message, headers or {}, extra


class Metrics:
    """The Prometheus series ``/metrics`` shows (a registry of the application's own)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("zoo_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=self.registry)
        self.errors = Counter("zoo_errors", "Answers other than 200, by kind", ["kind"], registry=self.registry)
        self.latency = Histogram("zoo_predict_latency_seconds", "Time to answer a prediction request", ["model"],
                                 registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.batch = Histogram("zoo_batch_size", "Images per model run", ["model"], registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64))
        self.queue = Gauge("zoo_queue_depth", "Requests admitted for a model and not answered yet", ["model"],
                           registry=self.registry)
        self.receiving = Gauge("zoo_bodies_receiving", "Request bodies being received (--max-receiving)",
                               registry=self.registry)
        self.pixels = Gauge("zoo_pixels_in_flight", "Decoded pixels held by requests (--max-pixels-in-flight)",
                            registry=self.registry)


class Server:
    """The models served, loaded at start (``settings.models``) or on first request (``on_demand``), and the
    server-wide bounds on what is let in (:mod:`zoo.serve.admission`).

    ``stop()``, if given, is called when a model named at start cannot be loaded (``failure`` says why);
    without it the server keeps answering, and ``/readyz`` reports the failure.
    """

    def __init__(self, settings: Settings, load: Callable[..., Any] = zoo.get,
                 stop: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.load = load
        self.stop = stop
        self.metrics = Metrics()
        #: The models named at start, by the name their URLs use, and their specs as they will be built.
        self.models: dict[str, Served] = {}
        self.specs: dict[str, ModelSpec] = {}
        for item in settings.models:
            served, spec = _named(item if isinstance(item, Served) else from_text(item))
            if served.name in self.models:
                raise UsageError(f"two served models are called {served.name!r} ({self.models[served.name].model} "
                                 f"and {served.model}); serve one under another name: ALIAS=FILE.onnx, or a "
                                 f"[models.ALIAS] table with model = ...")
            self.models[served.name], self.specs[served.name] = served, spec
        self.batchers: dict[str, Batcher] = {}
        self.loading: dict[str, asyncio.Task[Batcher]] = {}
        self.load_error: str | None = None
        self.failure: ModelLoadError | None = None
        self.receiving = Slots(settings.max_receiving, f"{settings.max_receiving} request bodies are being "
                               f"received already (--max-receiving)")
        self.pixels = PixelBudget(settings.max_pixels_in_flight, settings.timeout)

    @property
    def ready(self) -> bool:
        return all(name in self.batchers for name in self.models)

    def served(self) -> list[str]:
        return sorted(set(self.models) | set(self.batchers))

    async def load_all(self) -> None:
        """Load the models named at start, one after the other (each may export on first use: no time limit).

        With ``stop``, the first that fails stops the server, the reason in ``failure``; without it, the others
        are loaded and ``/readyz`` answers "failed"."""
        for served in self.models.values():
            try:
                await self._loaded(served)
            except Exception as error:  # noqa: BLE001 - reported by /readyz, and by zoo serve's exit
                self.load_error = f"{served.name}: {error}"
                if self.stop is None:
                    log.error("cannot load model %s: %s", served.name, error)
                    continue
                log.error("cannot load model %s: stopping the server", served.name)  # the reason: zoo serve's last line
                self.failure = _load_failure(served.name, error)
                self.stop()
                return

    def lookup(self, name: str) -> Served:
        """The model that a URL's ``name`` names: one named at start, else the installed model (looked up in the
        registry, never used as a path; its own name, or PLUGIN:NAME where that is contested)."""
        if name in self.models:
            return self.models[name]
        reference = default_registry().reference(zoo.get_spec(name))
        return self.models.get(reference, Served(reference))

    def find(self, name: str) -> Served:
        """The served model that a URL's ``name`` names (:meth:`lookup`): one named at start, or with ``--on-demand``
        any installed model; 404 otherwise."""
        served = self.lookup(name)
        if served.name not in self.models and not self.settings.on_demand:
            raise HTTPError(404, "NotServed", f"model {served.name!r} is installed but not served here; this server "
                            f"serves {', '.join(self.served()) or 'no model'} (start it with --on-demand to load "
                            f"any installed model)")
        return served

    async def batcher(self, name: str) -> tuple[str, Batcher]:
        """The served name and the batcher of model ``name`` (:meth:`find`), loading it if it is not loaded yet."""
        served = self.find(name)
        if served.name in self.batchers:
            return served.name, self.batchers[served.name]
        try:
            return served.name, await asyncio.wait_for(asyncio.shield(self._loaded(served)), self.settings.timeout)
        except TimeoutError:
            raise HTTPError(503, "Loading", f"model {served.name!r} is still loading (a first export can take "
                            f"minutes); retry later", {"Retry-After": "10"}) from None

    def spec(self, name: str) -> ModelSpec:
        """The spec of a served model (as loaded, or as it will be) or of an installed one."""
        if name in self.batchers:
            return self.batchers[name].model.spec
        return self.specs[name] if name in self.specs else zoo.get_spec(name)

    def _loaded(self, served: Served) -> asyncio.Task[Batcher]:
        """The task that loads a served model (one per model at a time, however many ask)."""
        if served.name not in self.loading:
            self.loading[served.name] = asyncio.create_task(self._load(served))
        return self.loading[served.name]

    async def _load(self, served: Served) -> Batcher:
        settings, name = self.settings, served.name
        start = time.perf_counter()
        try:
            model = await run_in_threadpool(self.load, served.model, runtime=settings.runtime,
                                            threads=settings.threads, batch_size=settings.max_batch_size,
                                            **served.get)
        finally:
            self.loading.pop(name, None)
        log.info("loaded %s (%s) in %.1f s", name, model.runtime, time.perf_counter() - start)
        if self.load_error is not None and self.load_error.startswith(f"{name}: "):
            self.load_error = None
        batch = self.metrics.batch.labels(name)
        self.batchers[name] = Batcher(model, max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_wait_ms,
                                      max_queue=settings.max_queue, on_batch=lambda size, _: batch.observe(size))
        return self.batchers[name]

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()


def _named(served: Served) -> tuple[Served, ModelSpec]:
    """``served`` with the name its URLs use, and its spec as it will be built (nothing built: a file is hashed, a
    name looked up). A registered model is served under its own name (PLUGIN:NAME where that is contested), an
    entry ``NAME/KEY`` as NAME, an ONNX file under the name it describes itself with, unless an alias is given."""
    from zoo.model import describe

    spec = describe(served.model, **served.get)[0]
    if served.name and served.name != served.model:
        return served, spec
    own = spec.name if spec.onnx is not None and spec.onnx.url.startswith("file:") and not spec.weights else None
    return dataclasses.replace(served, name=own or default_registry().reference(spec)), spec


def _load_failure(name: str, error: Exception) -> ModelLoadError:
    """The one-line error ``zoo serve`` ends with when model ``name``, named at start, cannot be loaded."""
    cause = error if isinstance(error, ZooError) else f"{type(error).__name__}: {error}"
    return ModelLoadError(f"model {name!r} cannot be loaded, so the server stopped: {cause}. Fix that and start it "
                          f"again, or serve it with --on-demand instead of by name (its requests then answer this "
                          f"error)")


# -- endpoints ---------------------------------------------------------------------------------


async def index(request: Request) -> Response:
    return FileResponse(str(PAGE / "index.html"), media_type="text/html")


async def openapi(request: Request) -> Response:
    return FileResponse(str(OPENAPI), media_type="application/json")


async def favicon(request: Request) -> Response:
    """``/favicon.ico``: nothing (204), without a token, so that browsers do not ask for one."""
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    server: Server = request.app.state.server
    body = {"status": "ready" if server.ready else "loading", "models": server.served(),
            "loaded": sorted(server.batchers)}
    if server.load_error:
        body.update(status="failed", error=server.load_error)
    return JSONResponse(body, status_code=200 if server.ready else 503)


async def metrics(request: Request) -> Response:
    server: Server = request.app.state.server
    for name, batcher in server.batchers.items():
        server.metrics.queue.labels(name).set(batcher.admitted)
    server.metrics.receiving.set(server.receiving.held)
    server.metrics.pixels.set(server.pixels.in_flight)
    return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _summary(server: Server, name: str) -> dict[str, Any]:
    """A model's line in ``/v1/models``; a loaded one's ``weights`` (file and sha256: your checkpoint's, where it was
    built from one), ``parity`` (the export's figures against PyTorch), and the ``runtime`` and ``precision`` it
    runs in (``--runtime auto``: those tuned on this machine)."""
    spec = server.spec(name)
    model = server.batchers[name].model if name in server.batchers else None
    loaded = model.metadata if model is not None else {}
    weights = {k: v for k, v in loaded["weights"].items() if k != "location"} if loaded.get("weights") else None
    return {"name": name, "task": spec.task, "summary": spec.summary, "labels": len(spec.labels),
            "plugin": spec.plugin, "weights": weights, "parity": loaded.get("parity"),
            "runtime": getattr(model, "runtime", None), "precision": getattr(model, "precision", None)}


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: the served models; ``?all=true``: every installed model too (``served`` says which)."""
    server: Server = request.app.state.server
    served = server.served()
    names = served + [n for n in zoo.list_models() if n not in served] if _flag(request, "all") else served
    return JSONResponse({"models": [{**_summary(server, n), "served": n in served or server.settings.on_demand,
                                     "loaded": n in server.batchers} for n in names]})


async def model_info(request: Request) -> Response:
    """``GET /v1/models/{name}``: what ``zoo info NAME --json`` prints; for a served model, with the arguments it is
    served with (a loaded one: its own file and record)."""
    from zoo.model import describe, info_of

    server: Server = request.app.state.server
    name = request.path_params["name"]
    if name.endswith("/predict"):  # the path of a model's predictions, asked with another method than POST
        raise StarletteHTTPException(405, headers={"Allow": "POST"})
    served = server.lookup(name)
    if served.name in server.batchers:
        model = server.batchers[served.name].model
        return JSONResponse(info_of(model.spec, model.converted, default_registry()))
    found = await run_in_threadpool(lambda: describe(served.model, **served.get))
    return JSONResponse(info_of(*found, default_registry()))


async def predict(request: Request) -> Response:
    """``POST /v1/models/{name}/predict``: one image (raw body or multipart field ``image``), options in the query.

    The bounds it passes, in order (:mod:`zoo.serve.admission`): the model's queue has room (else 503, the body
    unread); the body arrives within ``--body-timeout`` in one of ``--max-receiving`` slots (408, 503); the model
    admits it (503); its pixels, read from the image's header, fit ``--max-pixels-in-flight`` within ``--timeout``
    (503), and are held until the answer is made.
    """
    server: Server = request.app.state.server
    settings = server.settings
    start = time.perf_counter()
    served_as, batcher = await server.batcher(request.path_params["name"])
    model = batcher.model
    annotate = _flag(request, "annotate") or _wants_png(request)
    texts = {k: v for k, v in request.query_params.items() if k != "annotate"}
    given = options_from_text(model.spec, model.options, texts)  # each read by the type of its default
    options = merge_options(model.spec, model.options, given)  # a wrong option: 400 before reading
    batcher.check()  # 503 at once when the model has --max-queue requests: the body is not read
    data, name = await _received(request, server)
    with batcher.admit():
        pixels = await run_in_threadpool(_pixels, data, name, settings.max_pixels_in_flight)
        async with server.pixels.hold(pixels):
            image = await run_in_threadpool(images.decode, data, name)
            try:
                result = await asyncio.wait_for(batcher.predict(image, options), settings.timeout)
            except TimeoutError:
                raise HTTPError(504, "Timeout", f"the prediction took longer than {settings.timeout:g} s") from None
            server.metrics.latency.labels(served_as).observe(time.perf_counter() - start)
            if annotate:  # drawn inside the budget: the drawing is a copy of the image
                if not hasattr(result, "draw"):
                    raise HTTPError(406, "NotDrawable", f"the results of {model.spec.name} cannot be drawn; ask for "
                                    f"JSON")
                return Response(await run_in_threadpool(_png, result, image), media_type="image/png")
    return JSONResponse({"model": served_as, "options": options, "result": jsonable(result),
                         "ms": round((time.perf_counter() - start) * 1000, 1)})


async def _received(request: Request, server: Server) -> tuple[bytes, str]:
    """The request's image bytes (:func:`_image_bytes`), read in one of the ``--max-receiving`` slots (503 if none
    is free) within ``--body-timeout`` seconds (408 past it, the slot freed and the connection closed)."""
    settings = server.settings
    with server.receiving.hold():
        try:
            return await asyncio.wait_for(_image_bytes(request, settings.max_body), settings.body_timeout)
        except TimeoutError:
            raise HTTPError(408, "BodyTimeout", f"the request body did not arrive within {settings.body_timeout:g} s "
                            f"(--body-timeout); send it without pausing, or ask for a longer --body-timeout",
                            {"Connection": "close"}) from None


def _pixels(data: bytes, name: str, budget: int) -> int:
    """The image's width x height, from its header (nothing decoded; 0 for a header the zoo cannot read, which
    ``images.decode`` refuses unread); 422 past ``ZOO_MAX_PIXELS``, 413 past the whole ``budget``."""
    header = images._header(data, name, None)  # the reader that ZOO_MAX_PIXELS checks with, before decoding
    pixels = 0 if header is None else header[0][0] * header[0][1]
    if pixels > budget:
        raise HTTPError(413, "TooLarge", f"image {name} is {header[0][0]}x{header[0][1]}, {pixels:,} pixels; this "
                        f"server holds at most {budget:,} decoded pixels at once (--max-pixels-in-flight)")
    return pixels


async def _image_bytes(request: Request, limit: int) -> tuple[bytes, str]:
    """The image in the request, and what to call it in errors; 413 past ``limit`` bytes, read or declared."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise HTTPError(413, "TooLarge", f"the request body is {int(length):,} bytes; this server takes at most "
                        f"{limit:,} (--max-body)")
    kind = request.headers.get("content-type", "")
    if kind and not kind.startswith(("image/", "application/octet-stream", "multipart/form-data")):
        raise HTTPError(415, "UnsupportedMediaType", f"send the image as the body with Content-Type image/*, or "
                        f"as the multipart field 'image'; got Content-Type {kind!r}")
    request = Request(request.scope, _counted(request.receive, limit))  # a chunked body has no length to check
    if kind.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=16) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise HTTPError(422, "ZooInputError", "the multipart request has no file field 'image'")
            return await upload.read(), repr(upload.filename or "image")
    return b"".join([chunk async for chunk in request.stream()]), "(request body)"


def _counted(receive: Callable[[], Awaitable[Any]], limit: int) -> Callable[[], Awaitable[Any]]:
    """``receive`` that answers 413 once the body passes ``limit`` bytes."""
    seen = 0

    async def counting() -> Any:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise HTTPError(413, "TooLarge", f"the request body is over {limit:,} bytes, the most this server takes "
                            f"(--max-body)")
        return message

    return counting


def _png(result: Any, image: Any) -> bytes:
    import cv2

    drawn = result.draw(image)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR, dst=drawn))  # in place: no third copy
    assert ok, "PNG encoding failed"
    return encoded.tobytes()


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("1", "true", "yes", "on")


def _wants_png(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "image/png" in accept and "application/json" not in accept


# -- errors, tokens, the request log ---------------------------------------------------------------

STATUS = ((UnknownModelError, 404), (AmbiguousModelError, 409), (ZooInputError, 422), (UsageError, 400))


def error_response(error: Exception) -> JSONResponse:
    """The JSON answer for ``error``: ``{"error": {"kind", "message", ...}}`` with its status."""
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if isinstance(error, HTTPError):
        status, kind, message, headers, extra = error.status, error.kind, error.message, error.headers, error.extra
    elif isinstance(error, StarletteHTTPException):  # no such route (404) or method (405)
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "BadRequest")
        status, message = error.status_code, str(error.detail)
        if status in (404, 405):
            message += ": /openapi.json lists the endpoints"
        headers = dict(error.headers or {})
    elif isinstance(error, Busy):
        status, kind, message, headers = 503, "Busy", f"{error}; retry later", {"Retry-After": "1"}
    else:
        status = next((code for cls, code in STATUS if isinstance(error, cls)), 500)
        kind, message = type(error).__name__, str(error)
        if isinstance(error, UnknownModelError):
            extra = {"suggestions": list(error.suggestions)}
        elif isinstance(error, AmbiguousModelError):
            extra = {"suggestions": list(error.qualified)}
        if not isinstance(error, ZooError):
            log.exception("unexpected error", exc_info=error)
            message = "internal error: the server's log has the details"
    return JSONResponse({"error": {"kind": kind, "message": message, **extra}}, status_code=status, headers=headers)


PUBLIC = ("/", "/favicon.ico", "/healthz", "/readyz", "/openapi.json")  # and /static/: no token needed
class ModelNameConvertor(Convertor[str]):
    """A model's name in a URL: a name, or an owner's and a name (a Hub name, ``timm/resnet50.a1_in1k``)."""

    regex = "[^/]+(?:/[^/]+)?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("model", ModelNameConvertor())

ENDPOINTS = ((re.compile(r"/v1/models/[^/]+(?:/[^/]+)?/predict"), "/v1/models/{name}/predict"),
             (re.compile(r"/v1/models/[^/]+(?:/[^/]+)?"), "/v1/models/{name}"), (re.compile(r"/static/.*"), "/static"))


def _endpoint(path: str) -> str:
    """The metrics' label for ``path``: a route's template, or ``other`` (labels must not grow with URLs)."""
    if path in PUBLIC or path in ("/metrics", "/v1/models"):
        return path
    return next((name for pattern, name in ENDPOINTS if pattern.fullmatch(path)), "other")


class Guard:
    """ASGI middleware: the bearer token (on all but the page, its files, health and the schema), one log line and
    metrics per request."""

    def __init__(self, app: Any, server: Server) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        token = self.server.settings.token
        root = scope.get("root_path", "")
        path = scope["path"][len(root):] if root and scope["path"].startswith(root) else scope["path"]
        try:
            public = path in PUBLIC or path.startswith("/static/")
            if token and not public and not self._authorised(scope, token):
                response = error_response(HTTPError(401, "Unauthorized", "this server needs its token: send "
                                          "'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"}))
                await response(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %d %.1f ms", scope["method"], path, status[0], ms)
            self.server.metrics.requests.labels(_endpoint(path), str(status[0])).inc()

    @staticmethod
    def _authorised(scope: dict[str, Any], token: str) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def _handle(request: Request, error: Exception) -> Response:
    response = error_response(error)
    if response.status_code != 200:
        request.app.state.server.metrics.errors.labels(
            json.loads(response.body)["error"]["kind"]).inc()
    return response


def create_app(settings: Settings, load: Callable[..., Any] = zoo.get, stop: Callable[[], None] | None = None) -> Any:
    """The ASGI application serving ``settings.models`` (``load`` makes a model from a name, as ``zoo.get``;
    ``stop()`` is called if a model named at start cannot be loaded: see :class:`Server`)."""
    import contextlib

    server = Server(settings, load, stop)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        loading = asyncio.create_task(server.load_all())
        yield
        loading.cancel()
        await server.close()

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/openapi.json", openapi),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/v1/models", list_models),
        Route("/v1/models/{name:model}/predict", predict, methods=["POST"]),
        Route("/v1/models/{name:model}", model_info),
        Mount("/static", StaticFiles(directory=str(PAGE)), name="static"),
    ]
    handlers: dict[Any, Any] = {Exception: _handle, HTTPError: _handle, ZooError: _handle, Busy: _handle,
                                StarletteHTTPException: _handle}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.server = server
    return Guard(app, server)
