"""Run-length encoding of binary masks, in COCO's format (``{"size": [h, w], "counts": "..."}``).

Runs are counted down the columns (column-major, as COCO does), starting with a run of
zeros (empty when the first pixel is set). ``counts`` is COCO's compact string: each run,
from the fourth on, as its difference from the run two before it, written in groups of 5
bits (least significant first) with a continuation bit, each group offset by 48 into
printable ASCII. pycocotools' ``mask.decode`` reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np



def runs(mask: np.ndarray) -> np.ndarray:
    """The run lengths of a 2-D boolean mask, column-major, starting with zeros."""
    import numpy as np

    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    lengths = np.diff(edges)
    if flat.size and flat[0]:
        lengths = np.concatenate([[0], lengths])
    return lengths


def encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed RLE of a 2-D boolean mask."""
    lengths = runs(mask).tolist()
    chars = []
    for i, count in enumerate(lengths):
        value = count - lengths[i - 2] if i > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = not ((value == 0 and not group & 0x10) or (value == -1 and group & 0x10))
            chars.append(chr(group + 48 + (0x20 if more else 0)))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def decode(rle: dict[str, Any]) -> np.ndarray:
    """The boolean mask of a COCO RLE (compressed string or a list of counts)."""
    import numpy as np

    height, width = rle["size"]
    counts = rle["counts"]
    lengths = counts if isinstance(counts, list) else _read_counts(counts)
    values = np.arange(len(lengths)) % 2 == 1
    flat = np.repeat(values, lengths)
    if flat.size != height * width:
        raise ValueError(f"the run lengths add up to {flat.size} pixels, not {height} x {width}")
    return flat.reshape((height, width), order="F")


def _read_counts(text: str) -> list[int]:
    lengths: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << (5 * shift)
            more = bool(group & 0x20)
            position += 1
            shift += 1
            if not more and group & 0x10:
                value |= -1 << (5 * shift)
        if len(lengths) > 2:
            value += lengths[-2]
        lengths.append(value)
    return lengths
