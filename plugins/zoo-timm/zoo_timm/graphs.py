"""The graphs that embedding models export: imported by ``build`` only, since it imports torch."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Embedder(nn.Module):
    """A timm model's embedding and features, the graph outputs ``embedding`` and ``features`` (either may be
    left out).

    ``features`` is ``model.forward_features(x)``: a feature map ``(N, C, H, W)`` (``layout``
    ``NCHW``; one that the model makes channels last, ``NHWC``, is transposed to it) or tokens
    ``(N, L, C)`` (``NLC``); an empty ``layout`` (features at several scales) leaves them out.
    ``embedding`` is ``model.forward_head(features, pre_logits=True)`` (``head`` ``pre_logits``):
    the pooled vector the classifier reads; with ``head`` ``projection`` (a CLIP-style image tower,
    whose head projects into the space it shares with its text tower) the head's output instead,
    the vector compared with the text embeddings; an empty ``head`` (an encoder whose
    ``forward_head`` timm refuses) leaves it out.
    """

    def __init__(self, model: Any, head: str = "pre_logits", layout: str = "NCHW") -> None:
        super().__init__()
        assert head or layout, "an embedding graph needs an embedding or features"
        self.model = model
        self.head = head
        self.layout = layout

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        outputs = []
        if self.head:
            outputs.append(self.model.forward_head(features, pre_logits=self.head == "pre_logits"))
        if self.layout:
            outputs.append(features.permute(0, 3, 1, 2) if self.layout == "NHWC" else features)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
