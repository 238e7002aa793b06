"""The README's pictures: one per task, each a result's ``draw()``.

Run ``python docs/pictures.py`` (needs the export extra and scikit-image) to rewrite
``docs/pictures/*.png``. The classifier is zoo-digits' trained network; the other tasks use
small networks written below, whose outputs are exact and easy to check by eye: they
show what each task returns and draws, not what a trained detector achieves.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

import zoo

HERE = Path(__file__).resolve().parent
SHAPES = ("disc", "triangle", "rectangle")  # the red, green and blue shapes of the scene


def on_pixels(x: torch.Tensor) -> torch.Tensor:
    """Per colour, where the pixels of a (1, 3, H, W) image in [0, 1] are close to pure red, green or blue."""
    prototypes = torch.eye(3, dtype=x.dtype)[:, :, None, None]
    return ((x - prototypes) ** 2).sum(1) < 0.3  # (3, H, W)


class Shapes(torch.nn.Module):
    """Detects the red, green and blue shapes of one image, at most one of each colour (so no NMS).

    Outputs the ``outputs`` it is given, among boxes (N, 4), scores (N,) (the share of its box a
    shape fills), class_ids (N,), masks (N, H, W) and keypoints (N, 5, 3): the top, right, bottom
    and left extremes and the centre.
    """

    def __init__(self, outputs: tuple[str, ...]):
        super().__init__()
        self.outputs = outputs

    def forward(self, x):
        on = on_pixels(x)
        height, width = on.shape[1:]
        ys = torch.arange(height, dtype=x.dtype)[None, :, None].expand(3, height, width)
        xs = torch.arange(width, dtype=x.dtype)[None, None, :].expand(3, height, width)
        far = torch.full_like(ys, 1e9)
        first = lambda cost: torch.where(on, cost, far).flatten(1).argmin(1)
        big = float(max(height, width)) + 1
        extremes = [first(ys * big + xs), first(-xs * big + ys), first(-ys * big + xs), first(xs * big + ys)]
        points = [torch.stack([(i % width).to(x.dtype), (i // width).to(x.dtype)], 1) for i in extremes]
        area = on.flatten(1).sum(1).to(x.dtype).clamp(min=1)
        centre = torch.stack([(xs * on).flatten(1).sum(1), (ys * on).flatten(1).sum(1)], 1) / area[:, None]
        keypoints = torch.stack([*points, centre], 1)  # (3, 5, 2)
        keypoints = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], 2)
        x1, y1 = points[3][:, 0], points[0][:, 1]
        x2, y2 = points[1][:, 0] + 1, points[2][:, 1] + 1
        boxes = torch.stack([x1, y1, x2, y2], 1)
        scores = area / ((x2 - x1) * (y2 - y1)).clamp(min=1)
        present = on.flatten(1).any(1)
        found = {"boxes": boxes, "scores": scores, "class_ids": torch.arange(3), "masks": on.to(x.dtype),
                 "keypoints": keypoints}
        return tuple(found[name][present] for name in self.outputs)


class ColourMap(torch.nn.Module):
    """Semantic segmentation: background or the shape's colour (red, green or blue) per pixel, as logits."""

    def forward(self, x):
        distance = ((x - torch.eye(3, dtype=x.dtype)[:, :, None, None]) ** 2).sum(1)[None]  # (1, 3, H, W)
        return torch.cat([torch.full_like(distance[:, :1], -3.0), -10 * distance], 1)


class Saturation(torch.nn.Module):
    """Regression: the image's mean colour saturation (HSV's S), in percent."""

    def forward(self, x):
        high, low = x.amax(1), x.amin(1)
        return (100 * (high - low) / high.clamp(min=1e-6)).mean((1, 2))[:, None]


class ColourLayout(torch.nn.Module):
    """Image embedding: the mean colour of each cell of a 4x4 grid, less mid-grey (``embedding``, 48 values), and
    the grid itself (``features``, (3, 4, 4): ``pool="avg"`` gives the image's mean colour)."""

    def forward(self, x):
        cells = torch.nn.functional.avg_pool2d(x, (16, 24)) - 0.5  # the 64x96 input in 4x4 cells
        return cells.flatten(1), cells


def scene() -> np.ndarray:
    """A light, slightly noisy 240x360 RGB picture with a red disc, a green triangle and a blue rectangle."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(215, 8, (240, 360, 3)), 0, 255).astype(np.uint8)
    cv2.circle(image, (80, 110), 55, (230, 20, 20), -1)
    cv2.fillPoly(image, [np.array([[185, 200], [245, 45], [300, 200]], np.int32)], (20, 200, 40))
    cv2.rectangle(image, (250, 140), (345, 225), (30, 40, 220), -1)
    return image


def specs() -> dict[str, zoo.ModelSpec]:
    dynamic = zoo.Preprocess(resize=None, batching="single")
    keypoints = {"keypoint_names": ("top", "right", "bottom", "left", "centre"),
                 "skeleton": ((0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4), (2, 4), (3, 4))}
    boxes = ("boxes", "scores", "class_ids")

    def shapes(name: str, task: str, outputs: tuple[str, ...], **decode: object) -> zoo.ModelSpec:
        return zoo.ModelSpec(name=name, task=task, labels=SHAPES, preprocess=dynamic, batch_axis=False,
                             build=lambda s, w: Shapes(outputs).eval(), outputs=outputs,
                             decode={"nms": "graph", **decode})

    return {
        "image-classification": zoo.get("digits").spec,
        "regression": zoo.ModelSpec(name="saturation", task="regression", preprocess=dynamic,
                                    build=lambda s, w: Saturation().eval(), outputs=("saturation",)),
        "object-detection": shapes("shapes", "object-detection", boxes),
        "instance-segmentation": shapes("shapes-seg", "instance-segmentation", (*boxes, "masks")),
        "keypoint-detection": shapes("shapes-keypoints", "keypoint-detection", (*boxes, "keypoints"), **keypoints),
        "semantic-segmentation": zoo.ModelSpec(name="colour-map", task="semantic-segmentation",
                                               labels=("background", *SHAPES), preprocess=dynamic,
                                               build=lambda s, w: ColourMap().eval(), outputs=("logits",)),
        "image-embedding": zoo.ModelSpec(name="colour-layout", task="image-embedding",
                                         preprocess=zoo.Preprocess(resize=(64, 96)),
                                         build=lambda s, w: ColourLayout().eval(), outputs=("embedding", "features")),
    }


def photos() -> dict[str, np.ndarray]:
    import skimage.data

    digit = cv2.cvtColor(cv2.imread(str(HERE.parent / "plugins/zoo-digits/samples/3.png")), cv2.COLOR_BGR2RGB)
    return {"image-classification": cv2.resize(digit, (192, 192), interpolation=cv2.INTER_NEAREST),
            "regression": cv2.resize(skimage.data.coffee(), (360, 240), interpolation=cv2.INTER_AREA)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "pictures", help="folder for the PNG files")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ZOO_CACHE_DIR"] = cache  # the hand-made networks are exported, used and forgotten
        args.out.mkdir(parents=True, exist_ok=True)
        inputs = photos()
        for task, spec in specs().items():
            image = inputs.get(task, scene())
            result = zoo.get(spec, threads=1).predict(image)
            drawn = result.draw(image)
            path = args.out / f"{task}.png"
            cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
            print(f"{path}  ({spec.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
