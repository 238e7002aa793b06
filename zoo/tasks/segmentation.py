"""``semantic-segmentation``: a class per pixel, at the original image's size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo._fields import set_field
from zoo.errors import ZooInputError
from zoo.tasks import _draw, _rle, require

if TYPE_CHECKING:
    import numpy as np

    from zoo.geometry import Geometry
    from zoo.spec import ModelSpec


@dataclass(frozen=True)
class Segmentation:
    """A class map of one image: ``mask`` ``(H, W)`` int32 class ids at the image's size, and the class names."""

    mask: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        import numpy as np

        set_field(self, "mask", np.asarray(self.mask, np.int32))
        if self.mask.ndim != 2:
            raise ValueError(f"a segmentation mask is (height, width), got shape {self.mask.shape}")

    @property
    def fractions(self) -> dict[str, float]:
        """The fraction of the image's pixels of each class present, largest first."""
        import numpy as np

        ids, counts = np.unique(self.mask, return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {self.label(int(ids[i])): float(counts[i]) / self.mask.size for i in order}

    def label(self, class_id: int) -> str:
        """The name of ``class_id`` (its number when the spec has no name for it)."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: per class present, its pixel fraction and its mask as a COCO run-length encoding."""
        import numpy as np

        ids, counts = np.unique(self.mask, return_counts=True)
        classes = [{"class_id": int(i), "label": self.label(int(i)), "fraction": round(float(c) / self.mask.size, 6),
                    "mask": _rle.encode(self.mask == i)} for i, c in zip(ids, counts)]
        classes.sort(key=lambda item: -item["fraction"])
        return {"image_size": list(self.mask.shape), "classes": classes}

    def summary(self) -> str:
        """One line: the classes present by their share of the pixels, largest first, ``road 41.0%, car 12.3%``
        (the first eight)."""
        shares = list(self.fractions.items())
        text = ", ".join(f"{label} {share:.1%}" for label, share in shares[:8])
        return text + (f", ... ({len(shares) - 8} more)" if len(shares) > 8 else "")

    def draw(self, image: Any) -> np.ndarray:
        """An RGB uint8 copy of ``image`` with each class but 0 tinted in its colour, and a legend."""
        import numpy as np

        canvas = _draw.canvas(image)
        if canvas.shape[:2] != self.mask.shape:
            raise ValueError(f"the image is {canvas.shape[1]}x{canvas.shape[0]} but the mask is "
                             f"{self.mask.shape[1]}x{self.mask.shape[0]}: draw on the image that was predicted")
        present = [int(i) for i in np.unique(self.mask) if i != 0]
        for class_id in present:
            _draw.blend(canvas, self.mask == class_id, _draw.color(class_id + 1), alpha=0.55)
        font_scale, _ = _draw.scale_for(canvas)
        line = int(32 * font_scale) + 8
        for row, class_id in enumerate(present):
            _draw.label(canvas, self.label(class_id), 4, 4 + line * (row + 1), _draw.color(class_id + 1))
        return canvas


def postprocess(spec: ModelSpec, outputs: Mapping[str, np.ndarray], geometries: list[Geometry]) -> list[Segmentation]:
    """The task's default: the first output is ``(batch, classes, h, w)`` scores (argmax taken) or ``(batch, h, w)``
    class ids, over the model's input at any resolution; mapped back to each original image."""
    import numpy as np

    scores = next(iter(outputs.values()))
    results = []
    for i, geometry in enumerate(geometries):
        plane = np.asarray(scores[i])
        if plane.ndim not in (2, 3):
            raise ZooInputError(f"model {spec.name!r}: a segmentation output is (batch, classes, h, w) or "
                                f"(batch, h, w), got {np.shape(scores)}")
        class_map = plane.argmax(axis=0) if plane.ndim == 3 else plane
        results.append(Segmentation(mask=geometry.to_original_mask(class_map.astype(np.int32)), labels=spec.labels))
    return results


def compare(want: Segmentation, got: Segmentation, spec: ModelSpec | None = None, *,
            agreement: float = 0.995) -> dict[str, float]:
    """Class maps of the same size agreeing on at least ``agreement`` of the pixels."""
    require(want.mask.shape == got.mask.shape, f"mask of shape {got.mask.shape} instead of {want.mask.shape}")
    agreed = float((want.mask == got.mask).mean())
    require(agreed >= agreement, f"class maps agree on {agreed:.2%} of the pixels")
    return {"pixel_agreement": agreed}


def agreement(want: Sequence[Segmentation], got: Sequence[Segmentation]) -> dict[str, float]:
    """How far a reduced precision's class maps (``got``) are from float32's (``want``), one pair per held image.

    Figures: ``agreement``, the fraction of all the pixels of all the images whose class is the
    same; ``max_difference``, 1 - the pixel agreement of the image that agrees least (0 for no
    images); ``compared``, the pixels. ``ValueError`` unless the lists are of the same length and
    each pair of masks of the same shape.
    """
    import numpy as np

    if len(want) != len(got):
        raise ValueError(f"{len(got)} results to compare with {len(want)}: give one of each per image")
    agreed = compared = 0
    worst = 1.0
    for i, (expected, found) in enumerate(zip(want, got)):
        if expected.mask.shape != found.mask.shape:
            raise ValueError(f"image {i}: a mask of shape {found.mask.shape} to compare with {expected.mask.shape}")
        same = int(np.count_nonzero(expected.mask == found.mask))
        agreed += same
        compared += expected.mask.size
        if expected.mask.size:
            worst = min(worst, same / expected.mask.size)
    return {"agreement": agreed / compared if compared else 1.0, "max_difference": 1 - worst, "compared": compared}
