"""``zoo serve``: the models over HTTP."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from zoo.cli.arguments import (
    Commands,
    check_one_model,
    labels_of,
    runtime_argument,
    weights_arguments,
)
from zoo.errors import UsageError

#: zoo serve's batching defaults, from bench/bench_serve.py (the README's "Serving" section): 1.08x the images per
#: second at 16 clients on 2 cores, +3 ms for a request alone.
SERVE_DEFAULTS: dict[str, Any] = {"max_batch_size": 8, "max_wait_ms": 2.0}


def cmd_serve(args: argparse.Namespace) -> int:
    from zoo._fields import check_count

    for flag, value in (("--max-batch-size", args.max_batch_size), ("--max-queue", args.max_queue),
                        ("--max-body", args.max_body), ("--max-receiving", args.max_receiving),
                        ("--max-pixels-in-flight", args.max_pixels_in_flight)):
        check_count(flag, value)
    check_count("--threads", args.threads, optional=True)
    if args.max_wait_ms < 0 or args.timeout <= 0 or args.body_timeout <= 0:
        raise UsageError("--max-wait-ms must be at least 0, and --timeout and --body-timeout more than 0")
    if not args.names and not args.models and not args.on_demand:
        raise UsageError("name the models to serve (zoo serve resnet50 digits), list them in --models FILE, or "
                         "pass --on-demand")
    try:
        from zoo import serve
        from zoo.serve.models import Served, from_text, from_toml
    except ImportError as error:
        raise UsageError(f"zoo serve needs the serve extra ({error.name} is missing): "
                         f"pip install 'onnx-zoo[serve]'") from None
    models = [from_text(text, sha256=args.sha256) for text in args.names]
    check_one_model(args, args.names, "write NAME=WEIGHTS for each, or list them in --models FILE")
    if args.sha256 and not args.weights and not any("weights" in m.get for m in models):
        raise UsageError("--sha256 checks the weights of --weights or NAME=URL; give them too")
    if args.weights and models[0].get.get("weights"):
        raise UsageError(f"{args.names[0]!r} names its weights already; drop --weights")
    one = {key: value for key, value in (("weights", args.weights), ("labels", labels_of(args)),
                                          ("sha256", args.sha256 if args.weights else None)) if value is not None}
    models = [Served(m.name, m.model, {**one, **m.get}) for m in models]  # one model at most, when one is given
    models += from_toml(args.models) if args.models else []
    if args.precision != "fp32":  # every model named at start, unless its table says otherwise
        models = [Served(m.name, m.model, {"precision": args.precision, **m.get}) for m in models]
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        logging.getLogger("zoo").warning("serving on %s without --token: anyone who reaches it can use it", args.host)
    settings = serve.Settings(models=tuple(models), on_demand=args.on_demand, max_batch_size=args.max_batch_size,
                              max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_body=args.max_body,
                              timeout=args.timeout, token=args.token, runtime=args.runtime, threads=args.threads,
                              body_timeout=args.body_timeout, max_receiving=args.max_receiving,
                              max_pixels_in_flight=args.max_pixels_in_flight)
    serve.run(settings, host=args.host, port=args.port)
    return 0


def add_parsers(commands: Commands) -> None:
    """Add this module's commands to the ``zoo`` parser."""
    command = commands.command
    p = command("serve", cmd_serve, "serve models over HTTP, with a web page to try them",
                "Serve models over HTTP (pip install 'onnx-zoo[serve]'). The page at / tries them in a browser; "
                "POST /v1/models/NAME/predict takes an image as the body (curl --data-binary @photo.jpg -H "
                "'Content-Type: image/jpeg') or as the multipart field 'image', options as query parameters; "
                "/openapi.json documents every endpoint. Models load in the background: /readyz answers 200 once "
                "they are loaded. Concurrent requests for a model are batched up to --max-batch-size images or "
                "--max-wait-ms. SIGTERM or Ctrl-C finishes the requests in flight, then stops.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="models to load at start: NAME, NAME=WEIGHTS (your checkpoint, a file or a URL), NAME/KEY (a "
                        "cache entry), FILE.onnx or ALIAS=FILE.onnx (any installed model with --on-demand)")
    p.add_argument("--models", metavar="FILE.toml",
                   help="models to load at start, a [models.NAME] table each with zoo.get's arguments: model (a "
                        "name, NAME/KEY or an ONNX file; default NAME), weights, sha256, labels (a file), precision "
                        "(paths relative to the file)")
    weights_arguments(p, runs=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--on-demand", action="store_true", help="also load any installed model on its first request")
    p.add_argument("--token", default=os.environ.get("ZOO_SERVE_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' on the API and /metrics (default: $ZOO_SERVE_TOKEN, "
                        "better than this flag, which other users see in ps)")
    p.add_argument("--max-batch-size", type=int, default=SERVE_DEFAULTS["max_batch_size"], metavar="N",
                   help=f"most images per model run (default {SERVE_DEFAULTS['max_batch_size']})")
    p.add_argument("--max-wait-ms", type=float, default=SERVE_DEFAULTS["max_wait_ms"], metavar="MS",
                   help=f"how long a request waits for others to batch with (default {SERVE_DEFAULTS['max_wait_ms']:g})")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="requests a model holds once their body is in (decoding, waiting or running); the next is "
                        "answered 503 at once, before its body is read (default 64)")
    p.add_argument("--max-body", type=int, default=20 * 1024 * 1024, metavar="BYTES",
                   help="largest request body, else 413 (default 20 MiB)")
    p.add_argument("--max-receiving", type=int, default=32, metavar="N",
                   help="request bodies received at once, for all models; the next is answered 503 at once "
                        "(default 32)")
    p.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                   help="most time a request body may take to arrive; past it the answer is 408 and the connection "
                        "is closed, freeing its place (default 30 s)")
    p.add_argument("--max-pixels-in-flight", type=int, default=100_000_000, metavar="PIXELS",
                   help="decoded pixels held at once by all requests, read from each image's header before it is "
                        "decoded: a request that does not fit waits up to --timeout, then is answered 503; an image "
                        "larger than this is 413 (default 100000000, 100 megapixels: memory peaks at most 1.1 GiB "
                        "over the server's size at rest)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="answer 504 when a prediction takes longer, 503 when a model loads or an image waits for "
                        "pixels longer (default 30 s)")
    runtime_argument(p)
    p.add_argument("--threads", type=int, metavar="N", help="threads per model run (default: the runtime's)")
