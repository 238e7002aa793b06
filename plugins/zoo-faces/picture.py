"""The picture the README shows: ``mtcnn``'s faces and landmarks drawn on scikit-image's astronaut (its upper
part, which keeps the PNG small).

Run ``python plugins/zoo-faces/picture.py [OUT]`` (default: ``docs/pictures/faces.png`` of the repository).
The first run downloads facenet-pytorch's wheel and exports the three networks into the zoo's cache.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import skimage.data

import zoo

OUT = Path(__file__).resolve().parents[2] / "docs" / "pictures" / "faces.png"
#: The part of the drawing written: rows and columns.
SHOWN = (slice(0, 320), slice(96, 416))


def main(out: Path = OUT) -> None:
    """Detect the astronaut's face and write ``result.draw(image)`` (its :data:`SHOWN` part) to ``out``."""
    image = skimage.data.astronaut()
    result = zoo.get("mtcnn").predict(image)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(result.draw(image)[SHOWN], cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"cannot write {out}")
    print(f"{result.summary()} -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
