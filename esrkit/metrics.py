"""The challenge's image metrics (PSNR, SSIM) and the kits' tensor <-> uint8 conversions.

Everything here is a pure function of arrays. The protocol follows the official test_demo.py:
the SR output is quantised to uint8 first (``tensor_to_uint8``), both images lose ``crop_border``
pixels on every side, and PSNR / SSIM are computed on RGB in float64 (the kits never use Y;
``test_y_channel=True`` gives BasicSR's Y-channel convention used by papers' tables).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5


def tensor_to_uint8(t: torch.Tensor, data_range: float) -> np.ndarray:
    """1xCxHxW or CxHxW float tensor -> HxWxC uint8 array (the kits' ``tensor2uint``).

    Same arithmetic as the official code so the quantised SR image is bit-identical: float32,
    ``clamp(0, data_range)``, ``* 255 / data_range``, numpy round (half to even).
    """
    arr = _single_image(t).detach().float().clamp(0, data_range).cpu().numpy()
    arr = np.transpose(arr, (1, 2, 0))
    return np.uint8((arr * 255.0 / data_range).round())


def _single_image(t: torch.Tensor) -> torch.Tensor:
    """A 1xCxHxW or CxHxW tensor as CxHxW."""
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"expected a 1xCxHxW or CxHxW tensor, got shape {tuple(t.shape)}")
    return t


def uint8_to_tensor(img: np.ndarray, data_range: float) -> torch.Tensor:
    """HxWxC (or HxW) uint8 array -> 1xCxHxW float32 tensor ``img / (255 / data_range)``
    (the kits' ``uint2tensor4``)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()
    return chw.div(255.0 / data_range).unsqueeze(0)


_Y_OFFSET = 16.0
_Y_WEIGHTS = (65.481, 128.553, 24.966)  # MATLAB rgb2ycbcr's BT.601 row, for values in [0, 255]


def _float64(img: ArrayT) -> ArrayT:
    return img.double() if isinstance(img, torch.Tensor) else img.astype(np.float64)


def rgb_to_y(img: ArrayT) -> ArrayT:
    """BT.601 luma of an HxWx3 RGB image (array or tensor) with values in [0, 255], as MATLAB's ``rgb2ycbcr``.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in [16, 235], float64 and not
    rounded (BasicSR's ``test_y_channel`` convention; MATLAB would round uint8 input).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 RGB image, got shape {tuple(img.shape)}")
    rgb = _float64(img)
    r, g, b = _Y_WEIGHTS
    return _Y_OFFSET + (r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]) / 255.0


def _check_pair(shape1: tuple[int, ...], shape2: tuple[int, ...], crop_border: int) -> None:
    """The shape and border checks shared by the numpy and the torch metrics."""
    if shape1 != shape2:
        raise ValueError(f"images must have the same shape, got {shape1} and {shape2}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    h, w = shape1[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")


def _cropped(img1: ArrayT, img2: ArrayT, crop_border: int) -> tuple[ArrayT, ArrayT]:
    """Check that the shapes match, then remove ``crop_border`` pixels on every side (arrays or tensors)."""
    _check_pair(tuple(img1.shape), tuple(img2.shape), crop_border)
    if not crop_border:
        return img1, img2
    h, w = img1.shape[:2]
    window = (slice(crop_border, h - crop_border), slice(crop_border, w - crop_border))
    return img1[window], img2[window]


def _prepare(img1: ArrayT, img2: ArrayT, crop_border: int, test_y_channel: bool) -> tuple[ArrayT, ArrayT]:
    """Check shapes, crop the border, optionally take Y; float64 out (arrays or tensors)."""
    img1, img2 = _cropped(img1, img2, crop_border)
    if test_y_channel:
        return rgb_to_y(img1), rgb_to_y(img2)
    return _float64(img1), _float64(img2)


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


def _ssim_map(mu_a: ArrayT, mu_b: ArrayT, aa: ArrayT, bb: ArrayT, ab: ArrayT) -> ArrayT:
    """Per-pixel SSIM from the windowed means of a, b, a*a, b*b and a*b (arrays or tensors)."""
    var_a = aa - mu_a * mu_a
    var_b = bb - mu_b * mu_b
    cov = ab - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + _SSIM_C1) * (2.0 * cov + _SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return num / den


def _ssim_plane(a: np.ndarray, b: np.ndarray, kernel: np.ndarray) -> float:
    means = (_filter_valid(x, kernel) for x in (a, b, a * a, b * b, a * b))
    return float(np.mean(_ssim_map(*means)))


def _check_ssim_size(shape: tuple[int, ...]) -> None:
    if min(shape[:2]) < _SSIM_SIZE:
        raise ValueError(f"SSIM needs at least {_SSIM_SIZE}x{_SSIM_SIZE} pixels after cropping, got {tuple(shape[:2])}")


def ssim(img1: np.ndarray, img2: np.ndarray, crop_border: int = 4, test_y_channel: bool = False) -> float:
    """SSIM (Wang et al. 2004) as the kits compute it: 11x11 Gaussian window, sigma 1.5, valid
    region only, C1 = (0.01*255)^2, C2 = (0.03*255)^2, mean over channels."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    _check_ssim_size(a.shape)
    kernel = _gaussian_1d()
    if a.ndim == 2:
        return _ssim_plane(a, b, kernel)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c], kernel) for c in range(a.shape[2])]))


# The same metrics with torch, on the tensors' own device (the pipelined loop runs them on the GPU).
# Inputs are HxWxC (or HxW) uint8 tensors; every function returns a 0-dim float64 tensor, so a caller
# can queue them without waiting for the GPU. They equal the numpy functions above to float64 rounding
# (about 1e-13 dB; on RGB the mean squared error itself is exact: integer squared errors summed in float64).
# float64 is needed, so Apple MPS is not supported: compute these on the CPU there.


def tensor_to_uint8_torch(t: torch.Tensor, data_range: float) -> torch.Tensor:
    """:func:`tensor_to_uint8` without leaving the device: an HxWxC uint8 tensor, bit-identical to it.

    Divides by a device tensor rather than a Python number: CUDA turns a division by a scalar into a
    multiplication by its reciprocal, which can round differently from numpy's division.
    """
    x = _single_image(t).detach().float().clamp(0, data_range)
    x.mul_(255.0).div_(torch.full((), data_range, dtype=torch.float32, device=x.device)).round_()
    return x.to(torch.uint8).permute(1, 2, 0).contiguous()


def psnr_torch(img1: torch.Tensor, img2: torch.Tensor, crop_border: int = 4, test_y_channel: bool = False) -> torch.Tensor:
    """:func:`psnr` on tensors; ``inf`` for identical images."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    mse = (a - b).square().mean()
    return 20.0 * torch.log10(torch.full_like(mse, 255.0) / torch.sqrt(mse))  # a true division, as numpy's


def _channels_first(t: torch.Tensor) -> torch.Tensor:
    """HxW -> 1xHxW, HxWxC -> CxHxW."""
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def ssim_torch(img1: torch.Tensor, img2: torch.Tensor, crop_border: int = 4, test_y_channel: bool = False) -> torch.Tensor:
    """:func:`ssim` on tensors: the same separable Gaussian window, valid region, constants and channel mean."""
    a, b = _prepare(img1, img2, crop_border, test_y_channel)
    _check_ssim_size(tuple(a.shape))
    a, b = _channels_first(a), _channels_first(b)
    c = a.shape[0]
    stack = torch.cat([a, b, a * a, b * b, a * b])[:, None]  # 5C x 1 x H x W, filtered in one go
    k = torch.from_numpy(_gaussian_1d()).to(stack.device)
    filtered = F.conv2d(F.conv2d(stack, k.view(1, 1, -1, 1)), k.view(1, 1, 1, -1))[:, 0]
    return _ssim_map(*filtered.split(c)).mean(dim=(1, 2)).mean()
