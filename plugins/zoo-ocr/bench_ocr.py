"""``ppocr`` against RapidOCR (rapidocr-onnxruntime 1.4.4) on one page-like image, in the same process.

    python plugins/zoo-ocr/bench_ocr.py [--runs 9] [--threads N]

Both read the same generated page (about 24 lines of text in several fonts); runs alternate between the two, after
one warm-up each, and the table gives each one's median and fastest time, and the ratio of the medians. Both use
onnxruntime's default threads unless ``--threads`` sets the zoo's (RapidOCR's config keeps its default). The
texts are checked to be the same first. Needs the reference installed::

    pip install --no-deps rapidocr-onnxruntime==1.4.4 && pip install pyclipper shapely pyyaml six
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

WORDS = ["zoo", "models", "read", "text", "from", "pictures", "quickly", "and", "exactly", "as", "the", "reference",
         "does", "with", "same", "weights", "lines", "of", "many", "fonts", "sizes", "make", "a", "page", "like",
         "letter", "an", "invoice", "or", "chapter", "book", "2024", "No. 17", "EUR 1,234.56"]


def page(seed: int = 0) -> np.ndarray:
    """A 1000x760 RGB page of about 24 lines of words in five fonts and sizes, as a scan of a printed page."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (1000, 760), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    fonts = []
    for name, size in (("DejaVuSans.ttf", 22), ("LiberationSerif-Regular.ttf", 26), ("DejaVuSansMono.ttf", 18),
                       ("LiberationSans-Bold.ttf", 30), ("DejaVuSerif.ttf", 20)):
        try:
            fonts.append(ImageFont.truetype(name, size))
        except OSError:
            fonts.append(ImageFont.load_default(size=size))
    y = 20
    while y < 720:
        typeface = fonts[int(rng.integers(len(fonts)))]
        words = " ".join(rng.choice(WORDS, int(rng.integers(3, 9))))
        draw.text((30 + int(rng.integers(0, 200)), y), words, fill=(20, 20, 30), font=typeface)
        y += int(typeface.size * 1.25) + 4
    return np.asarray(image)


def cpu_flags() -> str:
    """The CPU's model and its vector extensions that onnxruntime uses (from /proc/cpuinfo where there is one)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in flags if f in ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                                        "amx_tile", "amx_bf16", "amx_int8", "avx512_bf16")]
    return f"{model}; {' '.join(wanted) or 'no AVX'}"


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import os

    from rapidocr_onnxruntime import RapidOCR

    import zoo

    image = page()
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    reference = RapidOCR()
    ours = zoo.get("ppocr", threads=args.threads)
    want = [text for _, text, _ in reference(bgr)[0]]
    got = ours.predict(image).texts
    assert got == want, f"the texts differ:\n  zoo      {got}\n  RapidOCR {want}"
    candidates = {"zoo ppocr": lambda: ours.predict(image), "RapidOCR": lambda: reference(bgr)}
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.runs):
        for name, fn in candidates.items():
            times[name].append(timed(fn))
    print(f"image {image.shape[1]}x{image.shape[0]}, {len(got)} lines; {args.runs} interleaved runs each after one "
          f"warm-up; {os.cpu_count()} logical CPUs: {cpu_flags()}")
    print(f"onnxruntime {__import__('onnxruntime').__version__}, numpy {np.__version__}, "
          f"opencv {__import__('cv2').__version__}")
    print(f"{'':12s} {'median ms':>10s} {'min ms':>8s}")
    for name, values in times.items():
        print(f"{name:12s} {1000 * statistics.median(values):10.1f} {1000 * min(values):8.1f}")
    ratio = statistics.median(times["zoo ppocr"]) / statistics.median(times["RapidOCR"])
    print(f"zoo / RapidOCR (medians): {ratio:.3f}" + ("  (no slower)" if ratio <= 1.0 else "  (slower)"))


if __name__ == "__main__":
    main()
