"""imresize against MATLAB-made LR files (shared benchmarks) and against analytic properties.

Measured on the shared benchmarks (default mode, run with -s to print them; 2026-11-26, CPU):
mean abs diff Set5 0.0184 / Set14 0.0195 / B100 0.0189, 100 % of interior pixels within 1 level
(the differences are in the outermost pixels only). With round_each_pass=False (one rounding at the
end, as the common Python ports): 0.1173 / 0.1216 / 0.1203. With boundary="replicate" every pixel
of all 119 files matches.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from esrkit.imageio import read_rgb
from esrkit.datasets import modcrop
from esrkit.imresize import imresize

SETS = ("Set5", "Set14", "B100")


def _pairs(benchmarks_dir: Path, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    set_dir = benchmarks_dir / name
    hr_paths = sorted((set_dir / "HR").glob("*.png"))
    if not hr_paths:
        pytest.skip(f"no HR images in {set_dir}")
    pairs = []
    for hr_path in hr_paths:
        lr_path = set_dir / "LR_bicubic" / "X4" / f"{hr_path.stem}x4.png"
        pairs.append((modcrop(read_rgb(hr_path), 4), read_rgb(lr_path)))
    return pairs


def _compare(outputs: list[np.ndarray], refs: list[np.ndarray]) -> tuple[float, float]:
    """Mean |diff| over all pixels and the fraction of interior (2 px border cut) within 1 level."""
    total, count, within, interior = 0.0, 0, 0, 0
    for out, ref in zip(outputs, refs):
        assert out.shape == ref.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
        total += float(diff.sum())
        count += diff.size
        inner = diff[2:-2, 2:-2]
        within += int((inner <= 1).sum())
        interior += inner.size
    return total / count, within / interior


@pytest.mark.parametrize("name", SETS)
def test_matches_matlab_lr_files(benchmarks_dir: Path, name: str) -> None:
    pairs = _pairs(benchmarks_dir, name)
    mad, frac = _compare([imresize(hr, 0.25) for hr, _ in pairs], [lr for _, lr in pairs])
    print(f"{name}: mean abs diff {mad:.4f}, interior within 1 level {100 * frac:.3f} %")
    assert mad <= 0.13
    assert frac >= 0.998


@pytest.mark.parametrize("name", SETS)
def test_legacy_mode_is_bit_exact_to_matlab_lr_files(benchmarks_dir: Path, name: str) -> None:
    for hr, lr in _pairs(benchmarks_dir, name):
        out = imresize(hr, 0.25, boundary="replicate")
        np.testing.assert_array_equal(out, lr)


def test_threshold_rejects_resize_without_matlab_antialiasing(benchmarks_dir: Path) -> None:
    """The acceptance bar is discriminative: OpenCV's area / cubic downscale must fail it."""
    pairs = _pairs(benchmarks_dir, "Set5")
    refs = [lr for _, lr in pairs]
    for interp in (cv2.INTER_AREA, cv2.INTER_CUBIC):
        outs = [cv2.resize(hr, (lr.shape[1], lr.shape[0]), interpolation=interp) for hr, lr in pairs]
        mad, frac = _compare(outs, refs)
        assert mad > 0.13 or frac < 0.998


@pytest.mark.parametrize(
    ("shape", "scale"),
    [((7, 10), 0.5), ((10, 11), 1 / 3), ((13, 9, 3), 0.25), ((5, 6, 3), 4), ((17, 23), 2.5), ((3, 2), 0.3)],
)
def test_output_shape_is_ceil_of_scaled_size(shape: tuple[int, ...], scale: float) -> None:
    img = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    out = imresize(img, scale)
    expected = (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale)) + shape[2:]
    assert out.shape == expected
    assert out.dtype == np.uint8


def test_explicit_output_shape() -> None:
    img = np.zeros((20, 30, 3), dtype=np.float32)
    assert imresize(img, output_shape=(7, 45)).shape == (7, 45, 3)


@pytest.mark.parametrize("value", [0, 1, 128, 255])
def test_upscale_of_constant_image_stays_constant(value: int) -> None:
    img = np.full((9, 7, 3), value, dtype=np.uint8)
    np.testing.assert_array_equal(imresize(img, 4), np.full((36, 28, 3), value, dtype=np.uint8))
    out = imresize(img.astype(np.float64) / 255.0, 4)
    np.testing.assert_allclose(out, value / 255.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("n_in", "n_out"), [(16, 64), (15, 45), (12, 31)])
def test_upscale_reproduces_quadratics_at_matlab_coordinates(n_in: int, n_out: int) -> None:
    """Keys' a=-0.5 cubic reproduces polynomials up to degree 2 exactly (a=-0.75 would not).

    Sampling f(i) = i^2 at 1-based pixel i, output pixel x must equal f(u) with MATLAB's
    u = x/s + 0.5*(1 - 1/s), wherever the 4 taps lie inside the image.
    """
    s = n_out / n_in
    i = np.arange(1, n_in + 1, dtype=np.float64)
    img = np.tile((0.3 * i**2 - 2 * i + 5)[:, None], (1, 3))
    out = imresize(img, output_shape=(n_out, 3))[:, 1]
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / s + 0.5 * (1 - 1 / s)
    inside = (u >= 3) & (u <= n_in - 2)
    np.testing.assert_allclose(out[inside], (0.3 * u**2 - 2 * u + 5)[inside], rtol=0, atol=1e-9)


def test_float_input_is_not_clipped() -> None:
    img = np.zeros((8, 8), dtype=np.float64)
    img[:, 4:] = 1.0  # a step edge: cubic interpolation overshoots on both sides
    out = imresize(img, 4)
    assert out.dtype == np.float64
    assert out.max() > 1.0 and out.min() < 0.0


def test_uint8_output_is_clipped() -> None:
    img = np.zeros((8, 8), dtype=np.uint8)
    img[:, 4:] = 255
    out = imresize(img, 4)
    assert out.dtype == np.uint8
    assert out.max() == 255 and out.min() == 0


def test_modcrop() -> None:
    img = np.zeros((11, 14, 3), dtype=np.uint8)
    assert modcrop(img, 4).shape == (8, 12, 3)
    assert modcrop(img[:, :, 0], 2).shape == (10, 14)


def test_invalid_arguments() -> None:
    img = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(ValueError):
        imresize(img)
    with pytest.raises(ValueError):
        imresize(img, 2, output_shape=(4, 4))
    with pytest.raises(ValueError):
        imresize(img, 2, boundary="wrap")  # type: ignore[arg-type]

