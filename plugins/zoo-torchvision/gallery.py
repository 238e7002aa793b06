"""Draw zoo-torchvision's detectors and segmenters on scikit-image's photos: the README's gallery.

    python plugins/zoo-torchvision/gallery.py            # writes docs/gallery/*.jpg

The weights are random (there is no download here): perturbed and made to detect as in the
parity tests (``check_exports.randomized``), so the pictures show what ``draw`` makes of
each task's result (boxes with labels and scores, masks, keypoint skeletons, class maps
with their legend), not what the trained models find. The models are exported into a
temporary cache and forgotten.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import cv2
import skimage.data
from check_exports import randomized
from zoo_torchvision import graphs

import zoo

HERE = Path(__file__).resolve().parent
#: (model, photo, predict's options): one model per task.
PICTURES = (("fasterrcnn_mobilenet_v3_large_320_fpn", "astronaut", {"score_threshold": 0.9, "max_detections": 6}),
            ("maskrcnn_resnet50_fpn", "coffee", {"score_threshold": 0.9, "max_detections": 4}),
            ("keypointrcnn_resnet50_fpn", "astronaut", {"score_threshold": 0.3, "max_detections": 2}),
            ("deeplabv3_mobilenet_v3_large", "chelsea", {}))


def confident(build, threshold):
    """``build`` whose detector keeps only boxes over ``threshold`` in its graph: the pictures show no more, and the
    export's parity check then skips the low-scoring random masks that do not pass it (see the note of issue 15)."""

    def confident_build(spec, weights):
        module = build(spec, weights)
        return graphs.score_threshold(module, threshold) if isinstance(module, graphs.Detector) else module

    return confident_build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs" / "gallery", help="folder for the pictures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ZOO_CACHE_DIR"] = folder
        for name, photo_name, options in PICTURES:
            photo = getattr(skimage.data, photo_name)()
            spec = randomized(zoo.get_spec(name))  # random weights: nothing to download
            threshold = options.get("score_threshold", 0.0)
            spec = dataclasses.replace(spec, weights=None, build=confident(spec.build, threshold))
            result = zoo.get(spec).predict(photo, **options)
            path = args.out / f"{name}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(result.draw(photo), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
