"""mtcnn (the zoo's ONNX networks, numpy around them) against facenet_pytorch.MTCNN, on a 1-megapixel photo.

    python plugins/zoo-faces/bench_mtcnn.py [--runs 15] [--threads N] [--image PATH]

The photo is scikit-image's astronaut enlarged to 1000x1000 (``cv2.INTER_CUBIC``), or ``--image``. Both
detectors get the same thread count (``--threads``, default ``os.cpu_count()``): onnxruntime's through
``zoo.get(threads=)``, ``torch.set_num_threads`` for facenet-pytorch. After two warm-up calls each, they are
timed in alternation (``time.perf_counter``), so that they see the same machine load; each row is the
median. The ratio is facenet-pytorch's time over the zoo's (above 1: the zoo is faster); the target is at
least 1 (no slower). Both must find the same faces, or the benchmark says so and fails. The zoo's cache
is the user's (``ZOO_CACHE_DIR``): the first run downloads facenet-pytorch's wheel and exports.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

#: The CPU flags that change what onnxruntime's and PyTorch's kernels run.
SIMD = ("avx", "amx", "fma", "neon", "asimd", "sve")


def cpu() -> tuple[str, list[str]]:
    """The CPU's name and its SIMD flags."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = sorted(f for f in (fields.get("flags") or fields.get("Features") or "").split() if f.startswith(SIMD))
    return fields.get("model name") or platform.processor() or platform.machine(), flags


def photo(path: str | None) -> np.ndarray:
    """The image to detect faces in, RGB uint8."""
    if path:
        import zoo.plugin

        return zoo.plugin.load_image(path)
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (1000, 1000), interpolation=cv2.INTER_CUBIC)


def interleaved(cases: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median seconds per call of each case, timed in turn after two warm-up calls each."""
    for call in cases.values():
        call(), call()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, call in cases.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--image", help="a photo instead of the enlarged astronaut")
    args = parser.parse_args()

    import torch
    from facenet_pytorch import MTCNN

    import zoo

    torch.set_num_threads(args.threads)
    image = photo(args.image)
    ours = zoo.get("mtcnn", threads=args.threads)
    reference = MTCNN(keep_all=True)
    found, boxes = ours.predict(image), reference.detect(image)[0]
    if len(found) != (0 if boxes is None else len(boxes)):
        raise SystemExit(f"the detectors disagree: zoo {len(found)} faces, facenet-pytorch "
                         f"{0 if boxes is None else len(boxes)}")
    times = interleaved({"zoo mtcnn (onnxruntime)": lambda: ours.predict(image),
                         "facenet_pytorch.MTCNN (torch)": lambda: reference.detect(image, landmarks=True)}, args.runs)

    name, flags = cpu()
    print(f"CPU: {name}, {os.cpu_count()} cores, threads {args.threads}; SIMD: {' '.join(flags) or '-'}")
    print(f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, zoo {zoo.__version__}")
    print(f"image {image.shape[1]}x{image.shape[0]} ({image.shape[0] * image.shape[1] / 1e6:.2f} MP), "
          f"{len(found)} face(s), median of {args.runs} interleaved runs\n")
    print("| detector | median ms |\n|---|---:|")
    for case, seconds in times.items():
        print(f"| {case} | {seconds * 1e3:.1f} |")
    zoo_time, torch_time = times.values()
    ratio = torch_time / zoo_time
    print(f"\nratio facenet-pytorch / zoo: {ratio:.2f}x (target >= 1.00: {'met' if ratio >= 1 else 'missed'})")


if __name__ == "__main__":
    main()
