"""zoo serve against in-process predict: latency and throughput at concurrency 1, 4 and 16, batching off and on;
its memory under a burst of large images.

    python bench/bench_serve.py [--model resnet50] [--requests 96] [--burst 16] [--json PATH]

The model has random weights (``zoo.testing.randomize``, saved to a file and passed as the
user's weights; nothing is downloaded), exported into a temporary ``ZOO_CACHE_DIR``. Every
request is one of four scikit-image photos as JPEG, so decoding is timed on both sides.

1. In process: ``model.predict(jpeg)`` in a loop, one request at a time (its latency and
   throughput are the reference); then the model is dropped, so that its session does not
   slow the server's.
2. The server, as ``zoo serve`` builds it (``zoo.serve.create_app`` under uvicorn, in a
   child process), unbatched (``--max-batch-size 1``) and batched (``zoo serve``'s
   defaults, ``zoo.cli.serve.SERVE_DEFAULTS``), each answering ``--requests`` requests from 1, 4 and 16
   client threads (keep-alive connections). The clients share the machine's cores with the
   server; the in-process loop has no client to pay for.
3. The admission rules a request passes (``zoo.serve.admission``: a receiving slot, the
   body read under ``--body-timeout``, its pixels read from the header in a worker thread,
   the pixel budget), timed in process on the same JPEGs: what they add to the p50.
4. A burst on the batched server (``zoo serve``'s defaults): ``--burst`` concurrent PNGs of
   100 megapixels of one grey (about 120 KB each, 300 MB once decoded), one in four with
   ``?annotate=true`` (its drawing is a second copy). The server's peak RSS (``VmHWM``,
   reset before the burst) is compared with the bound the README states: its RSS at rest
   plus ``zoo.serve.admission.PEAK_BYTES_PER_PIXEL`` for each pixel of ``--max-pixels-in-flight``.

Targets: p50 at concurrency 1 at most 5 ms over in-process; throughput at concurrency 4 at
least 90% of the in-process loop; batched throughput at concurrency 16 at least 1.15x the
unbatched server's; the admission rules at most 1% of the p50 at concurrency 1 (within
noise); the burst's peak under the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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

from zoo.cli.serve import SERVE_DEFAULTS

CONCURRENCY = (1, 4, 16)
CONFIGS = {"unbatched": ("1", "0"),
           "batched": (str(SERVE_DEFAULTS["max_batch_size"]), str(SERVE_DEFAULTS["max_wait_ms"]))}  # zoo serve's
#: The burst's images: one grey, 10,000 x 10,000 pixels (the default ZOO_MAX_PIXELS).
BURST_SIDE = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    parser.add_argument("--burst", type=int, default=16, help="large images sent at once (0: no burst)")
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
        served, burst = {}, None
        for name, (batch, wait) in CONFIGS.items():
            with server(args.model, weights, sha256, batch, wait) as (port, pid):
                served[name] = levels(args.model, port, jpegs, want, args.requests)
                if name == "batched" and args.burst:
                    burst = large_burst(args.model, port, pid, args.burst)
        admission = admission_cost(jpegs, args.requests)
    print(header(f"## zoo serve against in-process predict ({args.model})",
                 f"; {args.requests} requests per level, JPEG photos"))
    print()
    table = [["in process, one at a time", "1", f"{local['p50'] * 1e3:.1f}", f"{local['p99'] * 1e3:.1f}",
              f"{local['rate']:.1f}"]]
    table += [[f"server, {name}", str(c), f"{r['p50'] * 1e3:.1f}", f"{r['p99'] * 1e3:.1f}", f"{r['rate']:.1f}"]
              for name, figures in served.items() for c, r in figures.items()]
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
    rows.append(Row("admission rules per request, in process (slot, body under its timeout, header, pixel budget)",
                    admission, "s", "server p50 at concurrency 1", default[1]["p50"], admission / default[1]["p50"],
                    "time / reference", 0.01, "<=", "at most 1% (within noise)"))
    if burst is not None:
        print(f"burst of {args.burst} images of {BURST_SIDE ** 2 / 1e6:.0f} MP: RSS {burst['rest']:.0f} MiB at rest, "
              f"peak {burst['peak']:.0f} MiB, {burst['after']:.0f} MiB after; answers {burst['answers']}; "
              f"{burst['seconds']:.1f} s")
        print()
        rows.append(Row(f"peak RSS, {args.burst} concurrent {BURST_SIDE ** 2 / 1e6:.0f} MP PNGs (default settings)",
                        burst["peak"] / 1024, "GiB", "bound: RSS at rest + budget x bytes/pixel", burst["bound"] / 1024,
                        burst["peak"] / burst["bound"], "peak / bound", 1.0, "<=", "under the bound"))
        rows.append(Row("RSS after the burst", burst["after"] / 1024, "GiB", "RSS at rest", burst["rest"] / 1024,
                        burst["after"] / burst["rest"], "after / at rest", 1.25, "<=", "memory returns (at most 1.25x)"))
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


@contextmanager
def server(name: str, weights: Path, sha256: str, batch: str, wait: str) -> Iterator[tuple[int, int]]:
    """``zoo serve NAME`` (this script's ``--serve`` child) on a free port, ready: its port and process id."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--model", name, "--serve", str(port), str(weights), sha256,
                              batch, wait], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port, child)
        yield port, child.pid
    finally:
        child.terminate()
        child.wait(30)


def levels(name: str, port: int, jpegs: list[bytes], want: list[str], count: int) -> dict[int, dict[str, float]]:
    """The server's figures (:func:`timed`) at each concurrency of :data:`CONCURRENCY`, every answer checked."""
    import json
    import threading

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


def admission_cost(jpegs: list[bytes], count: int) -> float:
    """Median seconds of what the admission rules add to a request, in an event loop as in the server: a receiving
    slot, the body read under ``wait_for`` (a task), the header read in a worker thread, the pixel budget."""
    from starlette.concurrency import run_in_threadpool

    from zoo.serve import Settings
    from zoo.serve.admission import PixelBudget, Slots
    from zoo.serve.app import _pixels

    settings = Settings()

    async def body(data: bytes) -> bytes:
        return data

    async def one(data: bytes, slots: Slots, budget: PixelBudget) -> float:
        start = time.perf_counter()
        with slots.hold():
            data = await asyncio.wait_for(body(data), settings.body_timeout)
        pixels = await run_in_threadpool(_pixels, data, "(request body)", budget.limit)
        async with budget.hold(pixels):
            return time.perf_counter() - start

    async def all_of_them() -> list[float]:
        slots = Slots(settings.max_receiving, "full")
        budget = PixelBudget(settings.max_pixels_in_flight, settings.timeout)
        return [await one(jpegs[i % len(jpegs)], slots, budget) for i in range(8 + count)][8:]

    return statistics.median(asyncio.run(all_of_them()))


def large_burst(name: str, port: int, pid: int, count: int) -> dict[str, object]:
    """``count`` concurrent 100 MP PNGs (one in four with ``?annotate=true``): RSS at rest, peak and after (MiB),
    the bound, the answers' statuses and the seconds it took."""
    import collections

    import cv2
    import numpy as np

    from zoo.serve import Settings
    from zoo.serve.admission import PEAK_BYTES_PER_PIXEL

    png = cv2.imencode(".png", np.full((BURST_SIDE, BURST_SIDE), 200, np.uint8))[1].tobytes()

    def post(i: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        connection.request("POST", f"/v1/models/{name}/predict" + ("?annotate=true" if i % 4 == 0 else ""),
                           body=png, headers={"Content-Type": "image/png"})
        status = connection.getresponse().status
        connection.close()
        return status

    gc.collect()
    time.sleep(1)
    rest = memory(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from now on
    start = time.perf_counter()
    with ThreadPoolExecutor(count) as pool:
        statuses = collections.Counter(pool.map(post, range(count)))
    seconds = time.perf_counter() - start
    peak = memory(pid, "VmHWM")
    time.sleep(1)
    bound = rest + PEAK_BYTES_PER_PIXEL * Settings().max_pixels_in_flight / 2 ** 20
    return {"rest": rest, "peak": peak, "after": memory(pid, "VmRSS"), "bound": bound,
            "answers": dict(sorted(statuses.items())), "seconds": seconds}


def memory(pid: int, field: str) -> float:
    """A field of ``/proc/PID/status`` (VmRSS, VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} in /proc/{pid}/status")


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
