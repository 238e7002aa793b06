"""Ray Data throughput: ``zoo.ray.predict`` with 1 and 2 workers against the single-process predict loop.

    python bench/bench_ray.py [--model resnet50] [--images 192] [--batch-size 16] [--repeats 2] [--json PATH]

The images are JPEGs made from scikit-image's photos at long sides of 360 to 840 px, in a
temporary folder. The model gets random weights (``zoo.testing.randomize``) passed as
a ``file://`` URL with their sha256, exported once into a temporary cache before anything
is timed. A local Ray starts with 2 CPUs (``ray.init(num_cpus=2)``).

* the reference: one process, ``zoo.get(MODEL, threads=1).predict`` on batches of
  ``--batch-size`` paths, as many threads as one Ray worker gets;
* Ray, 1 worker and 2 workers of one CPU each: ``zoo.ray.read`` (``read_binary_files``) then
  ``zoo.ray.predict``, materialised (the results stay in Ray's object store).

The rate is the one a long run sees: each case runs on the first batch alone and on all
the images, and the rate is the images beyond the first batch over the time they added.
The first batch's time (Ray's actors start, import the zoo and open the model; the loop
opens the model) is in rows of its own. Each case runs ``--repeats`` times, in
alternation; the table has the best time of each. Targets (issue 18): 2 workers at least
1.6x one; one worker at least 85% of the loop. For information: the loop with 2 threads,
and two loops of 1 thread in two processes side by side, each on half the images (what
this machine's two cores give when nothing is shared: the ceiling for 2 workers).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from _common import Row, header, notes, random_weights, require, require_torchvision_model, results_table, write_json


def photos(folder: Path, count: int) -> list[Path]:
    """``count`` JPEGs: scikit-image's photos at long sides from 360 to 840 px."""
    import cv2
    import skimage.data

    sources = [getattr(skimage.data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")]
    paths = []
    for i in range(count):
        photo = sources[i % len(sources)]
        long = 360 + 40 * (i % 13)
        factor = long / max(photo.shape[:2])
        size = (round(photo.shape[1] * factor), round(photo.shape[0] * factor))
        path = folder / f"{i:04d}.jpg"
        cv2.imwrite(str(path), cv2.resize(photo, size, interpolation=cv2.INTER_AREA)[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def loop(model: str, get: dict[str, str], threads: int, paths: list[Path], batch_size: int) -> None:
    """The reference: ``zoo.get(model).predict`` over ``paths``, ``batch_size`` at a time."""
    import zoo

    opened = zoo.get(model, threads=threads, **get)
    for start in range(0, len(paths), batch_size):
        opened.predict(paths[start:start + batch_size])


def loops_side_by_side(model: str, get: dict[str, str], paths: list[Path], batch_size: int) -> None:
    """Two processes (spawned, as Ray's are), each running the 1-thread loop on its half of ``paths``."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.starmap(loop, [(model, get, 1, part, batch_size) for part in (paths[0::2], paths[1::2])])


def timed(args: argparse.Namespace, paths: list[Path], get: dict[str, str]) -> dict[str, dict[str, float]]:
    """The best time of each case on the first batch alone ("first") and on all of ``paths`` ("all")."""
    import ray
    import zoo.ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = context.enable_auto_log_stats = False

    def on_ray(workers: int, chosen: list[Path]) -> None:
        results = zoo.ray.predict(zoo.ray.read([str(p) for p in chosen]), args.model,
                                  batch_size=args.batch_size, concurrency=workers, **get)
        assert results.materialize().count() == len(chosen)

    cases = {"loop, 1 thread": lambda c: loop(args.model, get, 1, c, args.batch_size),
             "Ray, 1 worker": lambda c: on_ray(1, c), "Ray, 2 workers": lambda c: on_ray(2, c),
             "loop, 2 threads": lambda c: loop(args.model, get, 2, c, args.batch_size),
             "2 loops side by side": lambda c: loops_side_by_side(args.model, get, c, args.batch_size)}
    best: dict[str, dict[str, float]] = {name: {} for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            for label, chosen in (("first", paths[:args.batch_size]), ("all", paths)):
                start = time.perf_counter()
                case(chosen)
                best[name][label] = min(best[name].get(label, float("inf")), time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    if args.images < 2 * args.batch_size:
        parser.error("--images must be at least twice --batch-size: the rate is measured beyond the first batch")
    require("skimage", "ray", "ray.data")
    spec = require_torchvision_model(args.model)
    title = header(f"## Ray Data: {args.model}, {args.images} JPEGs of long side 360-840 px, batches of "
                   f"{args.batch_size}", f"; best of {args.repeats}")  # the load average before the run
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ["ZOO_CACHE_DIR"] = str(root / "cache")  # before Ray starts: its workers inherit it
        import ray

        import zoo

        weights, sha256, _ = random_weights(spec, root)
        get = {"weights": weights.as_uri(), "sha256": sha256}
        zoo.get(args.model, **get)  # the export, before anything is timed
        paths = photos(root, args.images)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            best = timed(args, paths, get)
        finally:
            ray.shutdown()
    # the rate of a long run: the images beyond the first batch over the time they added
    rate = {name: (args.images - args.batch_size) / (t["all"] - t["first"]) for name, t in best.items()}

    def row(measure: str, of: str, reference: str, against: str, target: float | None = None, text: str = "",
            note: str = "") -> Row:
        return Row(measure, rate[of], "img/s", reference, rate[against], rate[of] / rate[against], "rate / reference",
                   target, ">=" if target else None, text, note)

    rows = [
        row("Ray, 1 worker (1 CPU)", "Ray, 1 worker", "the predict loop, 1 thread", "loop, 1 thread", 0.85,
            "at least 85%"),
        row("Ray, 2 workers (1 CPU each)", "Ray, 2 workers", "Ray, 1 worker", "Ray, 1 worker", 1.6, "at least 1.6x"),
        row("Ray, 2 workers (1 CPU each)", "Ray, 2 workers", "the predict loop, 2 threads", "loop, 2 threads"),
        row("2 loops of 1 thread, side by side", "2 loops side by side", "the predict loop, 1 thread",
            "loop, 1 thread", note="the two cores' ceiling, with nothing shared"),
        row("Ray, 2 workers (1 CPU each)", "Ray, 2 workers", "2 loops side by side", "2 loops side by side"),
    ]
    rows += [Row(f"{name}: start and first batch", t["first"], "s", "-", None, None, "-") for name, t in best.items()]
    print(title)
    print()
    print(results_table(rows))
    print()
    print(notes(rows))
    write_json(args.json, "bench_ray", args, rows)


if __name__ == "__main__":
    main()
