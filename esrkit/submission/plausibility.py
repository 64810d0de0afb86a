"""Is a measured PSNR plausible for a super-resolution network? Bicubic upscaling is the floor every trained x4
network clears: a PSNR far below it is not a weak network but a wrong setting -- most often the data range (a
network trained for [0, 1] fed [0, 255], or the other way round), or weights that do not belong to the network.
``check`` judges the data range this way on one image; ``batch`` applies it to every team it measures."""

from __future__ import annotations

from typing import Sequence

from esrkit import metrics
from esrkit.datasets import ImagePair
from esrkit.imresize import imresize

SCALE = 4  # the challenge's
SANE_MARGIN_DB = 1.0  # check: of the two data ranges, a sane one gives at least bicubic's PSNR minus this
BATCH_MARGIN_DB = 3.0  # batch: a team this far below bicubic is flagged (a weak network is not; a wrong setting is)
BATCH_IMAGES = 3  # a batch compares each team with bicubic on the split's first images (computed once per batch)


def bicubic_psnr(pair: ImagePair, scale: int) -> float:
    """The PSNR of the kit's MATLAB-bicubic upscaling of ``pair``'s LR against its HR (the challenge's PSNR)."""
    hr, lr = pair.load(scale)
    return metrics.psnr(imresize(lr, scale), hr, crop_border=scale)


def below_bicubic(measured: Sequence[float], bicubic: Sequence[float], margin: float = SANE_MARGIN_DB) -> str | None:
    """Why ``measured`` (per-image PSNR) is implausible against ``bicubic`` on the same images (more than ``margin``
    dB below), or None."""
    if not measured or len(measured) != len(bicubic):
        return None
    ours, floor = sum(measured) / len(measured), sum(bicubic) / len(bicubic)
    if ours >= floor - margin:
        return None
    return (f"its PSNR on the split's first {len(measured)} image(s), {ours:.2f} dB, is far below bicubic "
            f"upscaling's {floor:.2f} dB on them")
