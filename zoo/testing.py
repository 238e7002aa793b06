"""Helpers for testing models with random weights (torch is imported inside, never at import).

Random initialisation can make a parity check prove nothing: torchvision leaves a ViT's
head at zero (every output 0) and an EfficientNet's outputs near 1e-20. :func:`randomize`
perturbs every parameter and calibrates BatchNorm statistics so that outputs are large,
varied and input-dependent.
"""

from __future__ import annotations

from typing import Any


def randomize(module: Any, input_shape: tuple[int, ...], *, seed: int = 1, scale: float = 0.5,
              batches: int = 3, batch_size: int = 2) -> Any:
    """Perturb every parameter of ``module`` in place and return it in eval mode.

    Each parameter gets Gaussian noise of ``scale`` times its own standard deviation (0.02
    for constant tensors such as zero biases or unit norm weights); then, if the module has
    BatchNorm layers, ``batches`` forward passes of random ``input_shape`` (C, H, W) inputs
    in training mode recompute their running statistics.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            spread = float(p.std()) if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * (scale * spread or 0.02))
        norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if norms:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the calibration batches
            module.train()
            for _ in range(batches):
                module(torch.randn((batch_size, *input_shape), generator=generator))
    return module.eval()
