"""The seeded probe inputs every measurement and check uses (one definition, so they all agree).

The official kits count complexity on an unseeded ``torch.rand(1, 3, 256, 256)`` (FLOPs) and on
uninitialised memory (activations); for a static network the values do not matter. The kit draws the
same distribution from a seeded generator, so its counts are reproducible. To find the networks for which
the values do matter, the second probe is not noise of the same kind (its mean is 0.5 too: a branch on the
input's mean would take the same way) but a real LR image: :func:`photo_lr`.
"""

from __future__ import annotations

import functools

import torch

COMPLEXITY_SHAPE = (3, 256, 256)  # the challenge's LR probe for params, FLOPs, activations, #conv
SEED = 0
PHOTO_PROBE = "photo"  # the second probe: a real LR image (:func:`photo_lr`)


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


PHOTO = "astronaut.png"  # scikit-image's sample photo (512x512, in its wheel): a real scene, not noise
PHOTO_TEXT = f"scikit-image's {PHOTO} made LR (x2 MATLAB-bicubic) to 3x256x256, in [0, 1]"


def photo_lr(height: int = COMPLEXITY_SHAPE[1], width: int = COMPLEXITY_SHAPE[2]) -> torch.Tensor:
    """A real LR image in [0, 1] as a 1x3xHxW tensor (see :func:`_photo_lr`; made once per process, a fresh tensor
    each call)."""
    return _photo_lr(height, width).clone()


@functools.lru_cache(maxsize=4)
def _photo_lr(height: int, width: int) -> torch.Tensor:
    """A real LR image in [0, 1] as a 1x3xHxW tensor: scikit-image's astronaut (read from its wheel's data folder,
    without importing scikit-image), downscaled x2 by the kit's MATLAB-bicubic imresize and cropped to HxW at its
    top left (256x256: the whole LR image)."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    from esrkit.errors import KitError
    from esrkit.imageio import read_rgb, uint8_to_tensor
    from esrkit.imresize import imresize

    found = importlib.util.find_spec("skimage")
    path = Path(found.submodule_search_locations[0]) / "data" / PHOTO if found and found.submodule_search_locations else None
    if path is None or not path.is_file():
        raise KitError(f"the second complexity probe is scikit-image's {PHOTO}, not found: pip install scikit-image")
    lr = imresize(read_rgb(path), 0.5)[:height, :width]
    if lr.shape[:2] != (height, width):
        raise ValueError(f"the photo probe is at most {lr.shape[0]}x{lr.shape[1]}; {height}x{width} was asked")
    return uint8_to_tensor(np.ascontiguousarray(lr), 1.0).contiguous()


def random_lr(height: int, width: int, data_range: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """A random uint8 LR image (seeded) made into a tensor as the challenge loop makes one (``uint8_to_tensor``: its
    values, and its channels_last strides, which decide the convolutions' memory format): what runtimes on a fixed
    input size are measured on."""
    import numpy as np

    from esrkit.imageio import uint8_to_tensor

    img = np.random.default_rng(SEED).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return uint8_to_tensor(img, data_range).to(device)
