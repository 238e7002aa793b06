"""Ray Data throughput: ``zoo.ray.predict`` with 1 and 2 workers against the single-process predict loop.

    python bench/bench_ray.py [--model resnet50] [--images 192] [--batch-size 16] [--repeats 2] [--json PATH]

The images are JPEGs made from scikit-image's photos at several sizes (0.1 to 0.5 MP),
in a temporary folder. The model gets random weights (``zoo.testing.randomize``) passed as
a ``file://`` URL with their sha256, exported once into a temporary cache before anything
is timed. A local Ray starts with 2 CPUs (``ray.init(num_cpus=2)``).

* the reference: one process, ``zoo.get(MODEL, threads=1).predict`` on batches of
  ``--batch-size`` paths, as many threads as one Ray worker gets;
* Ray, 1 worker and 2 workers of one CPU each: ``zoo.ray.read`` (``read_binary_files``) then
  ``zoo.ray.predict``, the dataset materialised. The time includes each run's actor
  start (import, model open): what a user waits for.

Each case runs ``--repeats`` times, in alternation; the table has the best of each, in
images per second. Targets (issue 18): 2 workers at least 1.6x one; one worker at least 85%
of the loop. A last row, for information, is the loop with 2 threads (the whole machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import Row, header, random_weights, require, require_torchvision_model, results_table, write_json


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    require("skimage", "ray", "ray.data")
    spec = require_torchvision_model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        os.environ["ZOO_CACHE_DIR"] = str(root / "cache")  # before Ray starts: its workers inherit it
        import ray

        import zoo
        import zoo.ray

        weights, sha256, _ = random_weights(spec, root)
        get = {"weights": weights.as_uri(), "sha256": sha256}
        zoo.get(args.model, **get)  # the export, before anything is timed
        paths = photos(root, args.images)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = context.print_on_execution_start = context.enable_auto_log_stats = False

        def loop(threads: int) -> None:
            model = zoo.get(args.model, threads=threads, **get)
            for start in range(0, len(paths), args.batch_size):
                model.predict(paths[start:start + args.batch_size])

        def on_ray(workers: int) -> None:
            done = zoo.ray.predict(zoo.ray.read([str(p) for p in paths]), args.model, batch_size=args.batch_size,
                                   concurrency=workers, **get)
            assert done.materialize().count() == len(paths)

        cases = {"loop, 1 thread": lambda: loop(1), "Ray, 1 worker": lambda: on_ray(1),
                 "Ray, 2 workers": lambda: on_ray(2), "loop, 2 threads": lambda: loop(2)}
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, case in cases.items():
                start = time.perf_counter()
                case()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        ray.shutdown()
    rate = {name: len(paths) / seconds for name, seconds in best.items()}
    rows = [
        Row("Ray, 1 worker (1 CPU)", rate["Ray, 1 worker"], "img/s", "the predict loop, 1 thread",
            rate["loop, 1 thread"], rate["Ray, 1 worker"] / rate["loop, 1 thread"], "rate / reference", 0.85, ">=",
            "at least 85%"),
        Row("Ray, 2 workers (1 CPU each)", rate["Ray, 2 workers"], "img/s", "Ray, 1 worker", rate["Ray, 1 worker"],
            rate["Ray, 2 workers"] / rate["Ray, 1 worker"], "rate / reference", 1.6, ">=", "at least 1.6x"),
        Row("Ray, 2 workers (1 CPU each)", rate["Ray, 2 workers"], "img/s", "the predict loop, 2 threads",
            rate["loop, 2 threads"], rate["Ray, 2 workers"] / rate["loop, 2 threads"], "rate / reference"),
    ]
    print(header(f"## Ray Data: {args.model}, {len(paths)} JPEGs of 0.1-0.5 MP, batches of {args.batch_size}",
                 f"; best of {args.repeats}"))
    print()
    print(results_table(rows))
    write_json(args.json, "bench_ray", args, rows)


if __name__ == "__main__":
    main()
