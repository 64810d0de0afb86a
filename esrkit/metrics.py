"""The challenge's image metrics, one implementation for numpy arrays and torch tensors, and their table.

The protocol follows the official test_demo.py: the SR output is quantised to uint8 first
(:func:`esrkit.imageio.tensor_to_uint8`), both images lose ``crop_border`` pixels on every side, and
PSNR / SSIM are computed on RGB in float64 (the kits never use Y; ``test_y_channel=True`` gives
BasicSR's Y-channel convention used by papers' tables).

Each function takes two HxWxC (or HxW) images with values in [0, 255], both numpy arrays or both
tensors. On arrays it returns a Python float; on tensors a 0-dim float64 tensor on their device, so
a caller on the GPU can queue it without waiting. The arithmetic is the same code on both (the only
difference is the library's own sum inside a mean), so they agree to float64 rounding (about 1e-13
dB; on RGB the squared error is exact: integer squared errors summed in float64). float64 is needed,
so on Apple MPS compute them on the CPU.

:data:`METRICS` is the one table every consumer reads (the evaluation loop, results.json, the
console summary): adding a metric means adding its function and a row here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
Score = "float | torch.Tensor"

_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5
_Y_OFFSET = 16.0
_Y_WEIGHTS = (65.481, 128.553, 24.966)  # MATLAB rgb2ycbcr's BT.601 row, for values in [0, 255]


def _float64(img: ArrayT) -> ArrayT:
    return img.double() if isinstance(img, torch.Tensor) else img.astype(np.float64)


def rgb_to_y(img: ArrayT) -> ArrayT:
    """BT.601 luma of an HxWx3 RGB image with values in [0, 255], as MATLAB's ``rgb2ycbcr``.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in [16, 235], float64 and not
    rounded (BasicSR's ``test_y_channel`` convention; MATLAB would round uint8 input).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 RGB image, got shape {tuple(img.shape)}")
    rgb = _float64(img)
    r, g, b = _Y_WEIGHTS
    return _Y_OFFSET + (r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]) / 255.0


def _prepare(img1: ArrayT, img2: ArrayT, crop_border: int, test_y_channel: bool) -> tuple[ArrayT, ArrayT]:
    """Check shapes, crop the border, optionally take Y; float64 out."""
    if type(img1) is not type(img2):
        raise TypeError(f"both images must be numpy arrays or both tensors, got {type(img1).__name__} and "
                        f"{type(img2).__name__}")
    if tuple(img1.shape) != tuple(img2.shape):
        raise ValueError(f"images must have the same shape, got {tuple(img1.shape)} and {tuple(img2.shape)}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = img1.shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")
    if crop_border:
        window = (slice(crop_border, h - crop_border), slice(crop_border, w - crop_border))
        img1, img2 = img1[window], img2[window]
    if test_y_channel:
        return rgb_to_y(img1), rgb_to_y(img2)
    return _float64(img1), _float64(img2)


def psnr(img1: ArrayT, img2: ArrayT, crop_border: int = 4, test_y_channel: bool = False) -> Score:
    """PSNR in dB: ``20 log10(255 / sqrt(MSE))`` over all remaining pixels and channels; ``inf`` if identical."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    mse = ((a - b) ** 2).mean()
    if isinstance(mse, torch.Tensor):
        return 20.0 * torch.log10(torch.full_like(mse, 255.0) / torch.sqrt(mse))  # a true division, as numpy's
    mse = float(mse)
    return float("inf") if mse == 0.0 else 20.0 * math.log10(255.0 / math.sqrt(mse))


def _gaussian_1d() -> np.ndarray:
    """The 11-tap, sigma 1.5 kernel of ``cv2.getGaussianKernel(11, 1.5)`` (sums to 1)."""
    x = np.arange(_SSIM_SIZE, dtype=np.float64) - (_SSIM_SIZE - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * _SSIM_SIGMA**2))
    return k / k.sum()


def _filter_valid(img: ArrayT, kernel: tuple[float, ...]) -> ArrayT:
    """Separable 2-D correlation with ``outer(kernel, kernel)``, valid region only.

    Equals ``cv2.filter2D(img, -1, window)[5:-5, 5:-5]``: those outputs never reach the border.
    """
    n = len(kernel)
    h, w = img.shape
    rows = sum(kernel[k] * img[k : h - n + 1 + k, :] for k in range(n))
    return sum(kernel[k] * rows[:, k : w - n + 1 + k] for k in range(n))


def _ssim_plane(a: ArrayT, b: ArrayT, kernel: tuple[float, ...]) -> ArrayT:
    """The mean SSIM map of one plane (windowed means of a, b, a*a, b*b and a*b)."""
    mu_a, mu_b, aa, bb, ab = (_filter_valid(x, kernel) for x in (a, b, a * a, b * b, a * b))
    var_a = aa - mu_a * mu_a
    var_b = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + _SSIM_C1) * (2.0 * cov + _SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return (num / den).mean()


def ssim(img1: ArrayT, img2: ArrayT, crop_border: int = 4, test_y_channel: bool = False) -> Score:
    """SSIM (Wang et al. 2004) as the kits compute it: 11x11 Gaussian window, sigma 1.5, valid
    region only, C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean over channels."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    if min(a.shape[:2]) < _SSIM_SIZE:
        raise ValueError(f"SSIM needs at least {_SSIM_SIZE}x{_SSIM_SIZE} pixels after cropping, got {tuple(a.shape[:2])}")
    kernel = tuple(float(k) for k in _gaussian_1d())
    planes = [(a, b)] if a.ndim == 2 else [(a[..., c], b[..., c]) for c in range(a.shape[2])]
    values = [_ssim_plane(pa, pb, kernel) for pa, pb in planes]
    if isinstance(a, torch.Tensor):
        return torch.stack(values).mean()
    return float(np.mean([float(v) for v in values]))


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One per-image quality metric as the kit reports it.

    ``name`` is the results.json key part (``valid_<name>`` per image, ``valid_ave_<name>`` the
    mean); ``official`` metrics are the ones the official kits write (the others are extras, written
    after them); ``flag`` names the command-line switch that turns an opt-in metric on (None: always).
    """

    name: str
    label: str
    compute: Callable[..., Score]  # (sr, hr, crop_border) -> score
    fmt: str
    official: bool
    flag: str | None = None


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("psnr", "PSNR", lambda sr, hr, border: psnr(sr, hr, border), ".2f", official=True),
    Metric("ssim", "SSIM", lambda sr, hr, border: ssim(sr, hr, border), ".4f", official=True, flag="ssim"),
    Metric("psnr_y", "Y-PSNR", lambda sr, hr, border: psnr(sr, hr, border, True), ".2f", official=False),
    Metric("ssim_y", "Y-SSIM", lambda sr, hr, border: ssim(sr, hr, border, True), ".4f", official=False, flag="ssim"),
)}


def selected(**flags: bool) -> tuple[Metric, ...]:
    """The metrics a run computes: every always-on one, plus those whose ``flag`` is set, in table order."""
    unknown = set(flags) - {m.flag for m in METRICS.values() if m.flag}
    if unknown:
        raise ValueError(f"no metric is switched on by {sorted(unknown)}")
    return tuple(m for m in METRICS.values() if m.flag is None or flags.get(m.flag, False))


def score_all(chosen: tuple[Metric, ...], sr: ArrayT, hr: ArrayT, crop_border: int) -> dict[str, Score]:
    """Every chosen metric of one image (floats on arrays, queued 0-dim tensors on tensors)."""
    return {m.name: m.compute(sr, hr, crop_border) for m in chosen}
