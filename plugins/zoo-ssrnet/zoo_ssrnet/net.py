"""SSR-Net in PyTorch, laid out so that it loads the public ssrnet-pytorch checkpoint.

SSR-Net (Tsun-Yi Yang, Yi-Hsuan Huang, Yen-Yu Lin, Pi-Cheng Hsiu, Yung-Yu Chuang: "SSR-Net:
A Compact Soft Stagewise Regression Network for Age Estimation", IJCAI 2018) estimates an age
from a 64x64 face in three coarse-to-fine stages. Two convolutional streams (one with ReLU and
average pooling, one with Tanh and max pooling) see the image; each stage fuses the two
streams' features at one depth and predicts, for its ``s_k`` bins:

* a distribution ``p_k`` over the bins,
* an offset ``eta_k`` in ``[-1, 1]`` per bin (the paper's index shifting), and
* a scale ``delta_k`` in ``[-1, 1]`` (the paper's dynamic range),

and the age is the soft stagewise regression::

    age = V * sum_k  sum_i (i + lambda_local * eta_k[i]) * p_k[i]  /  prod_{j <= k} s_j * (1 + lambda_d * delta_j)

with ``V = 101`` (ages 0 to 100). Stage 1, the coarsest, reads the deepest features.

This module is written from the paper, with its parameter names and shapes taken from the
PyTorch reimplementation https://github.com/oukohou/SSR_Net_Pytorch (``SSR_models/
SSR_Net_model.py``), whose ``pretrained_model/*.pth`` checkpoint it loads: the submodule
names (``funsion`` misspelling included) and ``nn.Sequential`` indices are that checkpoint's
keys. Like that implementation (and the authors' Keras code), the deepest block of each
stream has no final pooling, although the paper draws one. It imports torch at module level:
import it only where torch is wanted (the plugin's ``build``).
"""

from __future__ import annotations

import torch
from torch import nn

#: Channels of the two streams: stream 1 (ReLU, average pooling) and stream 2 (Tanh, max pooling).
STREAM_CHANNELS = {1: 32, 2: 16}
#: Channels of each stage's 1x1 fusion convolution.
FUSION_CHANNELS = 10
#: Pooling of the fusion features of each stage, which brings 32x32 and 16x16 maps to 4x4 (stage 1's
#: 8x8 map is kept as it is).
FUSION_POOL = {3: 8, 2: 4, 1: 1}
#: Height and width of the input image.
INPUT_SIZE = 64


def _conv_block(cin: int, cout: int, stream: int, pool: bool) -> list[nn.Module]:
    """Conv 3x3, batch norm, the stream's activation and (optionally) its 2x2 pooling."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout),
                               nn.ReLU() if stream == 1 else nn.Tanh()]
    if pool:
        layers.append(nn.AvgPool2d(2) if stream == 1 else nn.MaxPool2d(2))
    return layers


class SSRNet(nn.Module):
    """SSR-Net for 64x64 images: ``(N, 3, 64, 64)`` normalised input, ``(N,)`` ages in years.

    ``stages`` are the bin counts ``s_1, s_2, s_3`` (coarse to fine), ``lambda_local`` and
    ``lambda_d`` weigh the index offsets and the dynamic ranges, ``age_range`` is ``V``.
    The defaults are those of the public checkpoint.
    """

    def __init__(self, stages: tuple[int, int, int] = (3, 3, 3), lambda_local: float = 1.0, lambda_d: float = 1.0,
                 age_range: float = 101.0) -> None:
        super().__init__()
        if len(stages) != 3:
            raise ValueError(f"SSR-Net has three stages, got bin counts {stages}")
        self.stages = tuple(int(s) for s in stages)
        self.lambda_local = float(lambda_local)
        self.lambda_d = float(lambda_d)
        self.age_range = float(age_range)

        # The streams, shallow to deep: block 3 feeds stage 3 (finest), block 1 feeds stage 1.
        for stream, width in STREAM_CHANNELS.items():
            self.add_module(f"stream{stream}_stage3", nn.Sequential(*_conv_block(3, width, stream, pool=True)))
            self.add_module(f"stream{stream}_stage2", nn.Sequential(*_conv_block(width, width, stream, pool=True)))
            self.add_module(f"stream{stream}_stage1", nn.Sequential(*_conv_block(width, width, stream, pool=True),
                                                                    *_conv_block(width, width, stream, pool=False)))

        # Per stage and stream: a 1x1 convolution and pooling to a small map ("before PB"), then
        # a prediction block: dropout, a linear layer to the stage's bins, ReLU.
        for stage, bins in zip((1, 2, 3), self.stages):
            embedding = self.embedding_size(stage)
            for stream, width in STREAM_CHANNELS.items():
                layers: list[nn.Module] = [nn.Conv2d(width, FUSION_CHANNELS, kernel_size=1), nn.ReLU()]
                if FUSION_POOL[stage] > 1:
                    pool = FUSION_POOL[stage]
                    layers.append(nn.AvgPool2d(pool) if stream == 1 else nn.MaxPool2d(pool))
                prefix = f"funsion_block_stream{stream}_stage_{stage}"
                self.add_module(f"{prefix}_before_PB", nn.Sequential(*layers))
                self.add_module(f"{prefix}_prediction_block",
                                nn.Sequential(nn.Dropout(0.2), nn.Linear(embedding, bins), nn.ReLU()))
            # The fused bins go through a hidden layer of twice their size, then give p_k and eta_k;
            # delta_k comes from the product of the two streams' embeddings.
            self.add_module(f"stage{stage}_FC_after_PB", nn.Sequential(nn.Linear(bins, 2 * bins), nn.ReLU()))
            self.add_module(f"stage{stage}_prob", nn.Sequential(nn.Linear(2 * bins, bins), nn.ReLU()))
            self.add_module(f"stage{stage}_index_offsets", nn.Sequential(nn.Linear(2 * bins, bins), nn.Tanh()))
            self.add_module(f"stage{stage}_delta_k", nn.Sequential(nn.Linear(embedding, 1), nn.Tanh()))
            # The bin indices 0 .. s_k - 1; computed, not learned, so not part of the state dict.
            self.register_buffer(f"_bins{stage}", torch.arange(bins, dtype=torch.float32), persistent=False)

    @staticmethod
    def embedding_size(stage: int) -> int:
        """Length of a stage's flattened fusion features (10 channels on a 4x4 map, 8x8 for stage 1)."""
        side = INPUT_SIZE // 2 ** (4 - stage) // FUSION_POOL[stage]  # stage 3 reads a 32x32 map, stage 1 an 8x8 one
        return FUSION_CHANNELS * side * side

    def _stage(self, stage: int, stream1: torch.Tensor, stream2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A stage's expected bin index ``sum_i (i + lambda_local * eta_i) * p_i`` and its ``delta_k``, each ``(N,)``."""
        prefix = f"funsion_block_stream{{}}_stage_{stage}"
        a = self.get_submodule(prefix.format(1) + "_before_PB")(stream1).flatten(1)
        b = self.get_submodule(prefix.format(2) + "_before_PB")(stream2).flatten(1)
        delta = self.get_submodule(f"stage{stage}_delta_k")(a * b)[:, 0]
        fused = (self.get_submodule(prefix.format(1) + "_prediction_block")(a)
                 * self.get_submodule(prefix.format(2) + "_prediction_block")(b))
        hidden = self.get_submodule(f"stage{stage}_FC_after_PB")(fused)
        probabilities = self.get_submodule(f"stage{stage}_prob")(hidden)
        offsets = self.get_submodule(f"stage{stage}_index_offsets")(hidden)
        bins = getattr(self, f"_bins{stage}")
        return ((bins + self.lambda_local * offsets) * probabilities).sum(dim=1), delta

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Ages of a batch of normalised ``(N, 3, 64, 64)`` images, shape ``(N,)``."""
        features: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        stream1, stream2 = image, image
        for stage in (3, 2, 1):
            stream1 = self.get_submodule(f"stream1_stage{stage}")(stream1)
            stream2 = self.get_submodule(f"stream2_stage{stage}")(stream2)
            features[stage] = (stream1, stream2)
        terms = []
        denominator: torch.Tensor | float = 1.0  # prod_{j <= k} s_j * (1 + lambda_d * delta_j)
        for stage, bins in zip((1, 2, 3), self.stages):
            expected_index, delta = self._stage(stage, *features[stage])
            denominator = denominator * (bins * (1 + self.lambda_d * delta))
            terms.append(expected_index / denominator)
        return (terms[0] + terms[1] + terms[2]) * self.age_range
