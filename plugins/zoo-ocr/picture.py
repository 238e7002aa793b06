"""Draw ``ppocr``'s reading of a generated page into ``docs/pictures/ocr.png``: each line's polygon and its text.

    python plugins/zoo-ocr/picture.py [--out docs/pictures/ocr.png]

The page has lines in several fonts and sizes, a tilted line, an upside-down line and light text on a dark band.
Fetches the models on first use (RapidOCR's wheel, about 15 MB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def font(name: str, size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype(name, size)
    except OSError:
        return ImageFont.load_default(size=size)


def page() -> np.ndarray:
    """An 800x560 RGB page: a title, a paragraph, a tilted note, an upside-down line and a dark footer."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (800, 560), (252, 250, 244))
    draw = ImageDraw.Draw(image)
    draw.text((40, 30), "Reading text with onnx-zoo", fill=(20, 20, 60), font=font("LiberationSerif-Bold.ttf", 44))
    for row, line in enumerate(("PP-OCRv4 finds each line of text, turns it", "upright and reads it, as RapidOCR does,",
                                "with the same weights and the same result.")):
        draw.text((40, 110 + 40 * row), line, fill=(30, 30, 30), font=font("LiberationSerif-Regular.ttf", 28))
    note = Image.new("RGB", (330, 60), (255, 244, 170))
    ImageDraw.Draw(note).text((12, 12), "tilted by ten degrees", fill=(90, 40, 0), font=font("DejaVuSans.ttf", 26))
    note = note.rotate(10, expand=True, fillcolor=(252, 250, 244))
    image.paste(note, (430, 260))
    flipped = Image.new("RGB", (340, 50), (252, 250, 244))
    ImageDraw.Draw(flipped).text((8, 8), "this line is upside down", fill=(30, 30, 30), font=font("DejaVuSans.ttf", 26))
    image.paste(flipped.rotate(180), (40, 300))
    draw.rectangle((0, 440, 800, 560), fill=(25, 35, 70))
    draw.text((40, 465), "Invoice 2024-0117   Total: 1,234.56 EUR", fill=(240, 240, 210),
              font=font("DejaVuSansMono-Bold.ttf", 26))
    return np.asarray(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "pictures" / "ocr.png")
    args = parser.parse_args()

    import cv2

    import zoo

    image = page()
    found = zoo.get("ppocr").predict(image)
    print(found.summary())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(found.draw(image), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
