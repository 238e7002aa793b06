"""MTCNN's three networks in PyTorch, laid out so that facenet-pytorch's weights load into them as they are.

MTCNN (Kaipeng Zhang, Zhanpeng Zhang, Zhifeng Li, Yu Qiao: "Joint Face Detection and Alignment
using Multi-task Cascaded Convolutional Networks", IEEE Signal Processing Letters, 2016) finds faces
with a cascade of three small networks, each a stack of 3x3 (or 2x2) convolutions followed by PReLU,
most of them by max pooling that rounds its output size up:

* **PNet** (proposal), fully convolutional: for every 12x12 window (stride 2) of an image of any size,
  the probability that it holds a face and four offsets that refine the window's box;
* **RNet** (refine): for a 24x24 crop, the face probability and the box's four offsets;
* **ONet** (output): for a 48x48 crop, the same and the five landmarks (x then y of each,
  as fractions of the box).

Each network returns the softmax over (not a face, a face) first, then the offsets (then the
landmarks). Inputs are RGB, ``NCHW``, normalised as ``(pixel - 127.5) / 128``.

The parameter names are the keys of the state dicts in facenet-pytorch's wheel
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``: ``conv1``, ``prelu1``, ... and the dense heads), ported from
David Sandberg's TensorFlow facenet, whose MTCNN models are the authors' Caffe models converted. Caffe
flattens a feature map with width before height, so the dense layers read the map transposed to
``(N, W, H, C)``. This module imports torch: import it only where torch is wanted (the plugin's ``build``).
"""

from __future__ import annotations

import torch
from torch import nn

#: Per block: input and output channels, the kernel, and the max pooling after it as (kernel, stride), or None.
Block = tuple[int, int, int, tuple[int, int] | None]


class _Cascade(nn.Module):
    """Convolution + PReLU (+ max pooling, rounding up) blocks, named ``conv1``, ``prelu1``, ``pool1``, ..."""

    def __init__(self, blocks: list[Block]) -> None:
        super().__init__()
        self.depth = len(blocks)
        for i, (cin, cout, kernel, pool) in enumerate(blocks, 1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, kernel))
            self.add_module(f"prelu{i}", nn.PReLU(cout))
            if pool is not None:
                self.add_module(f"pool{i}", nn.MaxPool2d(*pool, ceil_mode=True))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's feature map."""
        for i in range(1, self.depth + 1):
            x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
            if hasattr(self, f"pool{i}"):
                x = getattr(self, f"pool{i}")(x)
        return x


def _flatten_caffe(x: torch.Tensor) -> torch.Tensor:
    """A feature map flattened in Caffe's order (width before height) for its dense layers."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PNet(_Cascade):
    """``(N, 3, H, W)``, H and W at least 12 -> face probabilities ``(N, 2, h, w)`` and box offsets ``(N, 4, h, w)``,
    ``h = ceil((H - 2) / 2) - 4`` (likewise ``w``): one per 12x12 window at stride 2."""

    def __init__(self) -> None:
        super().__init__([(3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None)])
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(_Cascade):
    """``(N, 3, 24, 24)`` -> face probabilities ``(N, 2)`` and box offsets ``(N, 4)``."""

    def __init__(self) -> None:
        super().__init__([(3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)])
        self.dense4 = nn.Linear(3 * 3 * 64, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu4(self.dense4(_flatten_caffe(self.features(x))))
        return torch.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(_Cascade):
    """``(N, 3, 48, 48)`` -> face probabilities ``(N, 2)``, box offsets ``(N, 4)`` and landmarks ``(N, 10)``
    (the five x, then the five y, as fractions of the box)."""

    def __init__(self) -> None:
        super().__init__([(3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None)])
        self.dense5 = nn.Linear(3 * 3 * 128, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.prelu5(self.dense5(_flatten_caffe(self.features(x))))
        return torch.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


#: The networks by the name the specs give them (``extra.network``).
NETWORKS: dict[str, type[_Cascade]] = {"pnet": PNet, "rnet": RNet, "onet": ONet}
