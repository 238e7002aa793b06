"""The ``ocr`` task's result: text lines, each a four-point polygon in image pixels with a score and its text."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from zoo.plugin import ModelSpec

Point = tuple[float, float]


@dataclass(frozen=True)
class TextLine:
    """One line of text: its corners (top-left, top-right, bottom-right, bottom-left, as ``(x, y)`` in the image's
    pixels), a score (the recogniser's mean character probability, or a detector's box score) and the text
    (None where only the region was detected)."""

    polygon: tuple[Point, Point, Point, Point]
    score: float
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"polygon": [list(point) for point in self.polygon], "text": self.text, "score": self.score}


@dataclass(frozen=True)
class TextLines:
    """The text lines of one image, in reading order (top to bottom, then left to right); iterable, ``len()``."""

    lines: tuple[TextLine, ...]
    #: The image's ``(height, width)``.
    image_size: tuple[int, int]

    def __iter__(self) -> Iterator[TextLine]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, index: int) -> TextLine:
        return self.lines[index]

    @property
    def texts(self) -> list[str | None]:
        return [line.text for line in self.lines]

    @property
    def polygons(self) -> np.ndarray:
        """The corners as a ``(lines, 4, 2)`` float32 array."""
        import numpy as np

        return np.array([line.polygon for line in self.lines], np.float32).reshape(-1, 4, 2)

    @property
    def scores(self) -> list[float]:
        return [line.score for line in self.lines]

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: ``image_size`` ``[height, width]`` and the ``lines`` (``polygon``, ``text``, ``score``)."""
        return {"image_size": list(self.image_size), "lines": [line.to_dict() for line in self.lines]}

    def summary(self) -> str:
        """One line: how many lines, and their texts (``2 lines: "Hello" "world"``), cut at 200 characters."""
        count = f"{len(self)} line{'s' * (len(self) != 1)}"
        texts = [line.text for line in self.lines if line.text is not None]
        if not texts:
            return f"{count} of text found" if self.lines else "no text"
        text = f"{count}: " + " ".join(f'"{t}"' for t in texts)
        return text if len(text) <= 200 else text[:197] + "..."

    def draw(self, image: Any) -> np.ndarray:
        """An RGB uint8 copy of ``image`` with each polygon outlined and whitened, its text written inside it.

        OpenCV's ``putText`` draws ASCII only: any other character is drawn as ``?``.
        """
        import cv2
        import numpy as np

        from zoo.plugin import load_image

        canvas = np.ascontiguousarray(load_image(image)).copy()
        thickness = max(1, round(min(canvas.shape[:2]) / 400))
        for index, line in enumerate(self.lines):
            corners = np.round(np.array(line.polygon)).astype(np.int32)
            colour = _colour(index)
            if line.text:
                inside = np.zeros(canvas.shape[:2], np.uint8)
                cv2.fillPoly(inside, [corners], 1)
                canvas[inside == 1] = (canvas[inside == 1] * 0.08 + 234).astype(np.uint8)  # 92% of the way to white
                _write(canvas, ascii_text(line.text), corners)
            cv2.polylines(canvas, [corners], True, colour, thickness, cv2.LINE_AA)
        return canvas


def ascii_text(text: str) -> str:
    """``text`` with every character that is not printable ASCII replaced by ``?``: what OpenCV can draw."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _colour(index: int) -> tuple[int, int, int]:
    """A strong colour per index, neighbours far apart in hue."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(index * 0.618033988749895 % 1.0, 0.9, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


def _write(canvas: np.ndarray, text: str, corners: np.ndarray) -> None:
    """``text`` in dark ink inside the polygon's bounding box, as large as fits its height and width."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    x1, y1 = corners.min(0)
    x2, y2 = corners.max(0)
    (w, h), base = cv2.getTextSize(text, font, 1.0, 2)
    scale = max(0.3, min((y2 - y1) * 0.85 / h, (x2 - x1) * 0.95 / max(w, 1)))
    thickness = max(1, round(scale * 1.6))
    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    x = int((x1 + x2 - w) / 2)
    y = int((y1 + y2 + h - base) / 2)
    cv2.putText(canvas, text, (x, y), font, scale, (10, 10, 30), thickness, cv2.LINE_AA)


def lines_from(polygons: Sequence[Any], scores: Sequence[float], texts: Sequence[str | None] | None,
               image_size: tuple[int, int]) -> TextLines:
    """A :class:`TextLines` from ``(4, 2)`` corner arrays, scores and texts (None: detection only)."""
    texts = texts if texts is not None else [None] * len(polygons)
    lines = tuple(TextLine(tuple((float(x), float(y)) for x, y in polygon), float(score), text)  # type: ignore[arg-type]
                  for polygon, score, text in zip(polygons, scores, texts))
    return TextLines(lines, (int(image_size[0]), int(image_size[1])))


def compare(want: TextLines, got: TextLines, spec: ModelSpec | None = None, *, polygon_tolerance: float = 1.0,
            score_tolerance: float = 1e-3) -> dict[str, float]:
    """The same lines in the same order: equal texts, corners within ``polygon_tolerance`` pixels, scores within
    ``score_tolerance``. Returns the largest differences; raises ``AssertionError`` naming the first mismatch."""
    import numpy as np

    if len(want) != len(got):
        raise AssertionError(f"{len(got)} text lines instead of {len(want)}: {got.texts} for {want.texts}")
    figures = {"lines": float(len(want)), "max_polygon_difference": 0.0, "max_score_difference": 0.0}
    for k, (a, b) in enumerate(zip(want, got)):
        if a.text != b.text:
            raise AssertionError(f"line {k} reads {b.text!r} instead of {a.text!r}")
        corners = float(np.abs(np.subtract(a.polygon, b.polygon)).max())
        if corners > polygon_tolerance:
            raise AssertionError(f"line {k} ({a.text!r}): corners {b.polygon} instead of {a.polygon}")
        score = abs(a.score - b.score)
        if score > score_tolerance:
            raise AssertionError(f"line {k} ({a.text!r}): score {b.score} instead of {a.score}")
        figures["max_polygon_difference"] = max(figures["max_polygon_difference"], corners)
        figures["max_score_difference"] = max(figures["max_score_difference"], score)
    return figures
