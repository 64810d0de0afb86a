"""The challenge's image metrics (PSNR, SSIM) and the kits' tensor <-> uint8 conversions.

Everything here is a pure function of arrays. The protocol follows the official test_demo.py:
the SR output is quantised to uint8 first (``tensor_to_uint8``), both images lose ``crop_border``
pixels on every side, and PSNR / SSIM are computed on RGB in float64 (the kits never use Y;
``test_y_channel=True`` gives BasicSR's Y-channel convention used by papers' tables).
"""

from __future__ import annotations

import math

import numpy as np
import torch

_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5


def tensor_to_uint8(t: torch.Tensor, data_range: float) -> np.ndarray:
    """1xCxHxW or CxHxW float tensor -> HxWxC uint8 array (the kits' ``tensor2uint``).

    Same arithmetic as the official code so the quantised SR image is bit-identical: float32,
    ``clamp(0, data_range)``, ``* 255 / data_range``, numpy round (half to even).
    """
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"expected a 1xCxHxW or CxHxW tensor, got shape {tuple(t.shape)}")
    arr = t.detach().float().clamp(0, data_range).cpu().numpy()
    arr = np.transpose(arr, (1, 2, 0))
    return np.uint8((arr * 255.0 / data_range).round())


def uint8_to_tensor(img: np.ndarray, data_range: float) -> torch.Tensor:
    """HxWxC (or HxW) uint8 array -> 1xCxHxW float32 tensor ``img / (255 / data_range)``
    (the kits' ``uint2tensor4``)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return chw.div(255.0 / data_range).unsqueeze(0)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an HxWx3 RGB image with values in [0, 255], as MATLAB's ``rgb2ycbcr``.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in [16, 235], float64 and not
    rounded (BasicSR's ``test_y_channel`` convention; MATLAB would round uint8 input).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 RGB image, got shape {img.shape}")
    rgb = img.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def _prepare(
    img1: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, crop the border, optionally take Y; float64 out."""
    if img1.shape != img2.shape:
        raise ValueError(f"images must have the same shape, got {img1.shape} and {img2.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = img1.shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")
    if crop_border:
        img1 = img1[crop_border : h - crop_border, crop_border : w - crop_border]
        img2 = img2[crop_border : h - crop_border, crop_border : w - crop_border]
    if test_y_channel:
        return rgb_to_y(img1), rgb_to_y(img2)
    return img1.astype(np.float64), img2.astype(np.float64)


def psnr(img1: np.ndarray, img2: np.ndarray, crop_border: int = 4, test_y_channel: bool = False) -> float:
    """PSNR in dB between two images with values in [0, 255] (uint8 HxWx3 RGB, or HxW).

    MSE over all remaining pixels and channels; ``inf`` for identical images.
    """
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return 20.0 * math.log10(255.0 / math.sqrt(mse))


def _gaussian_1d() -> np.ndarray:
    """The 11-tap, sigma 1.5 kernel of ``cv2.getGaussianKernel(11, 1.5)`` (sums to 1)."""
    x = np.arange(_SSIM_SIZE, dtype=np.float64) - (_SSIM_SIZE - 1) / 2.0
    k = np.exp(-(x**2) / (2.0 * _SSIM_SIGMA**2))
    return k / k.sum()


def _filter_valid(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation with ``outer(kernel, kernel)``, valid region only.

    Equals ``cv2.filter2D(img, -1, window)[5:-5, 5:-5]``: those outputs never reach the border.
    """
    n = kernel.size
    h, w = img.shape
    rows = sum(kernel[k] * img[k : h - n + 1 + k, :] for k in range(n))
    return sum(kernel[k] * rows[:, k : w - n + 1 + k] for k in range(n))


def _ssim_plane(a: np.ndarray, b: np.ndarray, kernel: np.ndarray) -> float:
    mu_a = _filter_valid(a, kernel)
    mu_b = _filter_valid(b, kernel)
    var_a = _filter_valid(a * a, kernel) - mu_a * mu_a
    var_b = _filter_valid(b * b, kernel) - mu_b * mu_b
    cov = _filter_valid(a * b, kernel) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + _SSIM_C1) * (2.0 * cov + _SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return float(np.mean(num / den))


def ssim(img1: np.ndarray, img2: np.ndarray, crop_border: int = 4, test_y_channel: bool = False) -> float:
    """SSIM (Wang et al. 2004) as the kits compute it: 11x11 Gaussian window, sigma 1.5, valid
    region only, C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean over channels."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    if min(a.shape[:2]) < _SSIM_SIZE:
        raise ValueError(f"SSIM needs at least {_SSIM_SIZE}x{_SSIM_SIZE} pixels after cropping, got {a.shape[:2]}")
    kernel = _gaussian_1d()
    if a.ndim == 2:
        return _ssim_plane(a, b, kernel)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c], kernel) for c in range(a.shape[2])]))
