"""zoo serve against in-process predict: latency and throughput at concurrency 1, 4 and 16, batching off and on.

    python bench/bench_serve.py [--model resnet50] [--requests 96] [--json PATH]

The model has random weights (``zoo.testing.randomize``, saved to a file and passed as the
user's weights; nothing is downloaded), exported into a temporary ``ZOO_CACHE_DIR``. Every
request is one of four scikit-image photos as JPEG, so decoding is timed on both sides.

1. In process: ``model.predict(jpeg)`` in a loop, one request at a time (its latency and
   throughput are the reference); then the model is dropped, so that its session does not
   slow the server's.
2. The server, as ``zoo serve`` builds it (``zoo.serve.create_app`` under uvicorn, in a
   child process), unbatched (``--max-batch-size 1``) and batched (``zoo serve``'s
   defaults, ``zoo.cli.SERVE_DEFAULTS``), each answering ``--requests`` requests from 1, 4 and 16
   client threads (keep-alive connections). The clients share the machine's cores with the
   server; the in-process loop has no client to pay for.

Targets: p50 at concurrency 1 at most 5 ms over in-process; throughput at concurrency 4 at
least 90% of the in-process loop; batched throughput at concurrency 16 at least 1.15x the
unbatched server's.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import (
    Row,
    header,
    markdown_table,
    random_weights,
    require,
    require_torchvision_model,
    results_table,
    write_json,
)

from zoo.cli import SERVE_DEFAULTS

CONCURRENCY = (1, 4, 16)
CONFIGS = {"unbatched": ("1", "0"),
           "batched": (str(SERVE_DEFAULTS["max_batch_size"]), str(SERVE_DEFAULTS["max_wait_ms"]))}  # zoo serve's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    parser.add_argument("--serve", nargs=5, metavar=("PORT", "WEIGHTS", "SHA256", "BATCH", "WAIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.model, *args.serve)
        return
    require("torch", "torchvision", "skimage", "starlette", "uvicorn")
    spec = require_torchvision_model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ZOO_CACHE_DIR"] = str(Path(folder) / "cache")
        os.environ["ZOO_OFFLINE"] = "1"
        weights, sha256, _ = random_weights(spec, Path(folder))
        jpegs = photos()
        local, want = in_process(args.model, weights, sha256, jpegs, args.requests)
        gc.collect()  # the in-process session's threads are gone before the server's run
        served = {name: measure_server(args.model, weights, sha256, batch, wait, jpegs, want, args.requests)
                  for name, (batch, wait) in CONFIGS.items()}
    print(header(f"## zoo serve against in-process predict ({args.model})",
                 f"; {args.requests} requests per level, JPEG photos"))
    print()
    table = [["in process, one at a time", "1", f"{local['p50'] * 1e3:.1f}", f"{local['p99'] * 1e3:.1f}",
              f"{local['rate']:.1f}"]]
    table += [[f"server, {name}", str(c), f"{r['p50'] * 1e3:.1f}", f"{r['p99'] * 1e3:.1f}", f"{r['rate']:.1f}"]
              for name, levels in served.items() for c, r in levels.items()]
    print(markdown_table(["", "concurrency", "p50 ms", "p99 ms", "requests/s"], table, "lrrrr"))
    print()
    default, unbatched = served["batched"], served["unbatched"]
    rows = [
        Row("server p50 at concurrency 1 (default settings)", default[1]["p50"], "s", "in-process p50",
            local["p50"], default[1]["p50"] / local["p50"], "time / reference", (local["p50"] + 0.005) / local["p50"],
            "<=", "at most 5 ms over"),
        Row("server throughput at concurrency 4 (default settings)", default[4]["rate"], "img/s",
            "in-process loop", local["rate"], default[4]["rate"] / local["rate"], "throughput / reference", 0.9, ">=",
            "at least 90%"),
        Row("batched server throughput at concurrency 16", default[16]["rate"], "img/s", "unbatched server",
            unbatched[16]["rate"], default[16]["rate"] / unbatched[16]["rate"], "throughput / reference", 1.15,
            ">=", "at least 1.15x"),
    ]
    print(results_table(rows))
    write_json(args.json, "bench_serve", args, rows)


def in_process(name: str, weights: Path, sha256: str, jpegs: list[bytes], count: int
               ) -> tuple[dict[str, float], list[str]]:
    """The in-process loop's figures, and the top label of each photo (the model goes with the return)."""
    import zoo

    model = zoo.get(name, weights=weights, sha256=sha256)
    for jpeg in jpegs:
        model.predict(jpeg)  # warm-up
    figures = timed(lambda i: model.predict(jpegs[i % len(jpegs)]), count, 1)
    return figures, [model.predict(jpeg).label for jpeg in jpegs]


def photos() -> list[bytes]:
    import cv2
    import skimage.data

    return [cv2.imencode(".jpg", cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR))[1].tobytes()
            for name in ("astronaut", "coffee", "chelsea", "rocket")]


def timed(call, count: int, concurrency: int) -> dict[str, float]:
    """p50, p99 (seconds) and rate (per second) of ``count`` calls of ``call(i)`` from ``concurrency`` threads."""
    latencies: list[float] = []

    def one(i: int) -> None:
        start = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"p50": statistics.median(latencies), "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "rate": count / elapsed}


def measure_server(name: str, weights: Path, sha256: str, batch: str, wait: str, jpegs: list[bytes],
                   want: list[str], count: int) -> dict[int, dict[str, float]]:
    import json
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--model", name, "--serve", str(port), str(weights), sha256,
                              batch, wait], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port, child)
        local = threading.local()

        def post(i: int) -> None:
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", f"/v1/models/{name}/predict", body=jpegs[i % len(jpegs)],
                               headers={"Content-Type": "image/jpeg"})
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200 or json.loads(body)["result"]["label"] != want[i % len(jpegs)]:
                raise SystemExit(f"the server answered {answer.status}: {body[:300]!r}")

        timed(post, 8, 1)  # warm-up
        return {c: timed(post, count, c) for c in CONCURRENCY}
    finally:
        child.terminate()
        child.wait(30)


def wait_ready(port: int, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the server exited: {child.stderr.read()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server was not ready in 300 s")


def serve(name: str, port: str, weights: str, sha256: str, batch: str, wait: str) -> None:
    """The child: ``zoo serve NAME`` with the random weights (``zoo.serve.run`` with a loader that passes them)."""
    import zoo
    from zoo.serve import Settings, run

    def load(model: str, **options):
        return zoo.get(model, weights=weights, sha256=sha256, **options)

    run(Settings(models=(name,), max_batch_size=int(batch), max_wait_ms=float(wait)), port=int(port), load=load,
        log_level="warning")


if __name__ == "__main__":
    main()
