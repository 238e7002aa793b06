"""Write ``zoo/data/photos/``: the photos int8 quantization calibrates on and checks agreement on.

They come from scikit-image's and scikit-learn's wheels (``pip install scikit-image
scikit-learn``), are scaled to 320 pixels on their longer side and saved as JPEG (quality 90),
and are listed with their source and licence in ``photos.toml``. Run from the repository's
root: ``python tools/photos.py``. The zoo never imports this script or those libraries.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "zoo" / "data" / "photos"
SKIMAGE = "scikit-image's data (skimage.data.{})"
SKLEARN = "scikit-learn's sample images (sklearn.datasets.load_sample_image('{}'))"
#: name: (loader, source, licence, role); "held" photos are never calibrated on.
PHOTOS = {
    "astronaut": ("skimage", "NASA, Eileen Collins", "public domain", "held"),
    "chelsea": ("skimage", "Stefan van der Walt", "CC0-1.0", "held"),
    "rocket": ("skimage", "SpaceX, DSCOVR launch on Falcon 9", "public domain", "held"),
    "china.jpg": ("sklearn", "danielbuechele (Flickr)", "CC-BY-2.0", "held"),
    "coffee": ("skimage", "Rachel Michetti", "CC0-1.0", "calibration"),
    "camera": ("skimage", "Lav Varshney", "CC0-1.0", "calibration"),
    "hubble_deep_field": ("skimage", "NASA", "public domain", "calibration"),
    "retina": ("skimage", "Mikael Häggström", "CC0-1.0", "calibration"),
    "coins": ("skimage", "Brooklyn Museum", "no known copyright restrictions", "calibration"),
    "clock": ("skimage", "Stefan van der Walt", "public domain", "calibration"),
    "immunohistochemistry": ("skimage", "CMMI", "no known copyright restrictions", "calibration"),
    "brick": ("skimage", "CC0Textures, Bricks25", "CC0-1.0", "calibration"),
    "grass": ("skimage", "linolafett (DeviantArt)", "CC0-1.0", "calibration"),
    "gravel": ("skimage", "CC0Textures, Gravel04", "CC0-1.0", "calibration"),
    "cell": ("skimage", "David Root", "CC0-1.0", "calibration"),
    "flower.jpg": ("sklearn", "vultilion (Flickr)", "CC-BY-2.0", "calibration"),
}


def load(name: str, loader: str) -> np.ndarray:
    if loader == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)
    from skimage import data

    image = getattr(data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by tools/photos.py. role: calibration (int8 ranges) or held (agreement checks only).", ""]
    for name, (loader, author, licence, role) in PHOTOS.items():
        image = load(name, loader).astype(np.uint8)
        factor = 320 / max(image.shape[:2])
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        file = Path(name).stem + ".jpg"
        cv2.imwrite(str(OUT / file), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        source = (SKLEARN if loader == "sklearn" else SKIMAGE).format(name)
        lines += ["[[photo]]", f'file = "{file}"', f'role = "{role}"', f'author = "{author}"',
                  f'license = "{licence}"', f'source = "{source}"', ""]
    (OUT / "photos.toml").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
