"""The seeded probe inputs every measurement and check uses (one definition, so they all agree).

The official kits count complexity on an unseeded ``torch.rand(1, 3, 256, 256)`` (FLOPs) and on
uninitialised memory (activations); for a static network the values do not matter. The kit draws the
same distribution from a seeded generator, so its counts are reproducible, and counts a second
time on :data:`SECOND_SEED` to find the networks for which they do matter.
"""

from __future__ import annotations

import torch

COMPLEXITY_SHAPE = (3, 256, 256)  # the challenge's LR probe for params, FLOPs, activations, #conv
SEED = 0
SECOND_SEED = 1


def seeded_rand(shape: tuple[int, ...], seed: int = SEED) -> torch.Tensor:
    """``torch.rand(1, *shape)`` from a generator seeded with ``seed`` (the official probe's distribution)."""
    return torch.rand(1, *shape, generator=torch.Generator().manual_seed(seed))


def probe_input(height: int = COMPLEXITY_SHAPE[1], width: int = COMPLEXITY_SHAPE[2], *, data_range: float = 1.0,
                seed: int = SEED, device: torch.device | str = "cpu") -> torch.Tensor:
    """A 1x3xHxW image probe in [0, data_range): :func:`seeded_rand` scaled to the entry's range."""
    x = seeded_rand((COMPLEXITY_SHAPE[0], height, width), seed)
    return (x * data_range if data_range != 1.0 else x).to(device)


def describe(seed: int = SEED) -> str:
    """How the probe is drawn, for reports."""
    return f"torch.rand(1, 3, 256, 256) from torch.Generator().manual_seed({seed})"


def random_lr(height: int, width: int, data_range: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """A random uint8 LR image (seeded) made into a tensor as the challenge loop makes one (``uint8_to_tensor``: its
    values, and its channels_last strides, which decide the convolutions' memory format): what runtimes on a fixed
    input size are measured on."""
    import numpy as np

    from esrkit.imageio import uint8_to_tensor

    img = np.random.default_rng(SEED).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return uint8_to_tensor(img, data_range).to(device)
