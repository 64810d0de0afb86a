"""MATLAB-compatible bicubic ``imresize``.

The benchmark LR images were made with MATLAB's ``imresize(HR, 1/4, 'bicubic')``. PIL/OpenCV
bicubic differ from it (no antialiasing when downscaling, a=-0.75 in OpenCV, other pixel-centre
mapping), so anything that recreates LR inputs must use this module.

What MATLAB does, and this module reproduces:

- cubic kernel with a = -0.5 (Keys), support [-2, 2];
- when downscaling, antialiasing: the kernel is stretched to ``scale * k(scale * x)`` and its
  support widened to ``4 / scale``;
- output pixel ``x`` (1-based) samples the input at ``u = x / scale + 0.5 * (1 - 1 / scale)``;
- taps outside the image are mirrored symmetrically (``1..n, n..1`` repeated), today's rule;
- the weights of each output pixel are normalised to sum to 1;
- the dimension with the smaller scale is resized first (rows first on a tie);
- output size ``ceil(in * scale)``.

- uint8 input is rounded to uint8 after *each* pass, as MATLAB's ``imresizemex`` returns the input's
  class (the common Python ports keep float64 between passes and round once, which is off by
  +-1 level on about 12% of pixels).

The benchmark LR files in shared/data/benchmarks (SelfExSR, made with an older MATLAB) match the
defaults everywhere but the outermost pixels, and bit-exactly (all 119 images) with
``boundary="replicate"``: that MATLAB replicated the edge pixel instead of mirroring.
``round_each_pass=False`` gives the single-rounding behaviour of the Python ports.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

Boundary = Literal["symmetric", "replicate"]

_KERNEL_WIDTH = 4.0  # support of the cubic kernel, in input pixels, at scale >= 1


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


def _contributions(
    in_len: int, out_len: int, scale: float, boundary: Boundary
) -> tuple[np.ndarray, np.ndarray]:
    """Weight and (0-based, in-range) index tables, both of shape (out_len, taps)."""
    antialias = scale < 1.0
    width = _KERNEL_WIDTH / scale if antialias else _KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    dist = u[:, None] - idx
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    idx0 = idx.astype(np.int64) - 1
    if boundary == "symmetric":
        # Mirror with period 2n: 0..n-1, n-1..0 (edge pixel repeated, as MATLAB's 1..n, n..1).
        period = 2 * in_len
        m = np.mod(idx0, period)
        idx0 = np.where(m < in_len, m, period - 1 - m)
    else:
        idx0 = np.clip(idx0, 0, in_len - 1)
    # Drop taps whose weight is zero for every output pixel (as MATLAB does; saves work).
    keep = np.any(weights != 0.0, axis=0)
    return weights[:, keep], idx0[:, keep]


def _resize_axis(
    img: np.ndarray, axis: int, out_len: int, scale: float, boundary: Boundary
) -> np.ndarray:
    """Resize one axis: for each tap, gather the source rows and add them with their weights."""
    weights, idx = _contributions(img.shape[axis], out_len, scale, boundary)
    moved = np.moveaxis(img, axis, 0)
    trailing = (1,) * (moved.ndim - 1)
    out = np.zeros((out_len,) + moved.shape[1:], dtype=np.float64)
    for t in range(weights.shape[1]):
        out += weights[:, t].reshape((out_len,) + trailing) * moved[idx[:, t]]
    return np.moveaxis(out, 0, axis)


def _to_uint8_levels(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round half away from zero (MATLAB's uint8 cast), still float64."""
    return np.floor(np.clip(x, 0.0, 255.0) + 0.5)


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    *,
    boundary: Boundary = "symmetric",
    round_each_pass: bool = True,
) -> np.ndarray:
    """Resize an HxW or HxWxC image like MATLAB ``imresize(img, scale, 'bicubic')``.

    Give either ``scale`` (output size ``ceil(H*scale) x ceil(W*scale)``) or ``output_shape``
    ``(H_out, W_out)`` (per-axis scales ``H_out/H``, ``W_out/W``). uint8 input is computed in
    float64, clipped to [0, 255] and rounded half away from zero after each axis (``round_each_pass``),
    and returned as uint8; float input returns float64, unclipped.

    ``boundary="replicate"`` reproduces the older MATLAB that made the benchmark LR files.
    """
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an HxW or HxWxC array, got shape {img.shape}")
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize needs exactly one of scale or output_shape")
    if boundary not in ("symmetric", "replicate"):
        raise ValueError(f"boundary must be 'symmetric' or 'replicate', got {boundary!r}")
    in_h, in_w = img.shape[:2]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        out_hw = (int(math.ceil(in_h * scale)), int(math.ceil(in_w * scale)))  # as MATLAB
    else:
        out_hw = (int(output_shape[0]), int(output_shape[1]))
        if min(out_hw) <= 0:
            raise ValueError(f"output_shape must be positive, got {output_shape}")
        scales = (out_hw[0] / in_h, out_hw[1] / in_w)

    is_uint8 = img.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(img.dtype, np.floating)):
        raise ValueError(f"imresize supports uint8 or float images, got {img.dtype}")
    out = img.astype(np.float64, copy=False)
    # Stable sort: the axis with the smaller scale first, rows first on a tie.
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        out = _resize_axis(out, axis, out_hw[axis], scales[axis], boundary)
        if is_uint8 and round_each_pass:
            out = _to_uint8_levels(out)

    if is_uint8:
        return _to_uint8_levels(out).astype(np.uint8)
    return out

