"""Image loading: ``zoo.images.load(path)`` against ``cv2.imread`` of the same file, PNG and JPEG, 0.3 and 12 MP.

    python bench/bench_decode.py [--runs 60] [--json PATH]

The photo is scikit-image's astronaut, resized with ``cv2.INTER_AREA`` (0.3 MP: 640x480) or
``INTER_CUBIC`` (12 MP: 4000x3000), written once as PNG and as JPEG (quality 90). The zoo's
load reads the header (size, format, EXIF orientation, the pixel cap) and decodes once with
OpenCV; ``cv2.imread`` only decodes. Median of ``--runs`` rounds, cases in alternation.
Target: at most 1.1x ``cv2.imread``'s time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import Row, header, measure, require, results_table, write_json

SIZES = {"0.3 MP": (640, 480), "12 MP": (4000, 3000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (for plot.py)")
    args = parser.parse_args()
    require("skimage")
    import cv2
    import skimage.data

    from zoo import images

    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size_name, size in SIZES.items():
            resized = cv2.resize(photo, size, interpolation=cv2.INTER_AREA if size[0] < 512 else cv2.INTER_CUBIC)
            for fmt, params in (("png", []), ("jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])):
                path = Path(folder) / f"photo-{size[0]}.{fmt}"
                cv2.imwrite(str(path), resized, params)
                if not (images.load(path) == cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)).all():
                    raise SystemExit(f"{path.name}: the zoo's pixels differ from cv2.imread's")
                times = measure({"zoo": lambda p=path: images.load(p), "cv2": lambda p=path: cv2.imread(str(p))},
                                args.runs)
                rows.append(Row(f"images.load, {size_name} {fmt.upper()}", times["zoo"], "s",
                                "cv2.imread of the same file", times["cv2"], times["zoo"] / times["cv2"],
                                "time / reference", 1.1, "<=", "at most 1.1x"))
    print(header("## Image loading", f"; median of {args.runs} rounds"))
    print()
    print(results_table(rows))
    write_json(args.json, "bench_decode", args, rows)


if __name__ == "__main__":
    main()
