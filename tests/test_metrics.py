"""Metrics against scikit-image on real benchmark images.

How the comparison is made like-for-like: our functions crop ``crop_border`` px themselves, so
skimage gets the already-cropped arrays. skimage's SSIM (gaussian_weights=True, sigma=1.5)
uses truncate=3.5, i.e. the same 11-tap kernel; it filters the whole input with 'reflect'
padding and then averages the SSIM map without a (win_size-1)//2 = 5 px strip. Those remaining
positions are exactly the official "valid" region ``filter2D(...)[5:-5, 5:-5]``, so the padding
never reaches the mean and the two values agree to float rounding (<1e-15 measured; PSNR exact).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from esrkit.datasets import modcrop
from esrkit.imageio import quantise, read_rgb, tensor_to_uint8, uint8_to_tensor
from esrkit.imresize import imresize
from esrkit.metrics import METRICS, _gaussian_1d, psnr, rgb_to_y, score_all, selected, ssim

CASES = [("Set5", "img_001"), ("Set5", "img_003"), ("Set14", "img_005")]


def _hr_and_degraded(benchmarks_dir: Path, set_name: str, image: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    hr_path = benchmarks_dir / set_name / "HR" / f"{image}.png"
    if not hr_path.exists():
        pytest.skip(f"{hr_path} missing")
    hr = modcrop(read_rgb(hr_path), 4)
    if kind == "bicubic":
        lr = read_rgb(benchmarks_dir / set_name / "LR_bicubic" / "X4" / f"{image}x4.png")
        degraded = imresize(lr, 4)
    else:
        noise = np.random.default_rng(1234).normal(0.0, 6.0, size=hr.shape)
        degraded = np.clip(np.round(hr + noise), 0, 255).astype(np.uint8)
    assert degraded.shape == hr.shape
    return hr, degraded


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border else img


@pytest.mark.parametrize("kind", ["bicubic", "noise"])
@pytest.mark.parametrize(("set_name", "image"), CASES)
@pytest.mark.parametrize("border", [4, 0])
def test_rgb_metrics_match_skimage(
    benchmarks_dir: Path, set_name: str, image: str, kind: str, border: int
) -> None:
    hr, deg = _hr_and_degraded(benchmarks_dir, set_name, image, kind)
    a, b = _crop(hr, border), _crop(deg, border)
    ref_psnr = peak_signal_noise_ratio(a, b, data_range=255)
    ref_ssim = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )
    assert psnr(hr, deg, crop_border=border) == pytest.approx(ref_psnr, abs=1e-4)
    assert ssim(hr, deg, crop_border=border) == pytest.approx(ref_ssim, abs=1e-5)
    assert 15.0 < ref_psnr < 45.0 and 0.3 < ref_ssim < 0.999  # a real, non-trivial comparison


@pytest.mark.parametrize("kind", ["bicubic", "noise"])
@pytest.mark.parametrize(("set_name", "image"), CASES)
def test_y_channel_metrics_match_skimage_on_y(benchmarks_dir: Path, set_name: str, image: str, kind: str) -> None:
    hr, deg = _hr_and_degraded(benchmarks_dir, set_name, image, kind)
    ya, yb = (rgb2ycbcr(_crop(x, 4))[..., 0] for x in (hr, deg))
    ref_psnr = peak_signal_noise_ratio(ya, yb, data_range=255)
    ref_ssim = structural_similarity(
        ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert psnr(hr, deg, test_y_channel=True) == pytest.approx(ref_psnr, abs=1e-4)
    assert ssim(hr, deg, test_y_channel=True) == pytest.approx(ref_ssim, abs=1e-5)
    assert psnr(hr, deg, test_y_channel=True) != pytest.approx(psnr(hr, deg), abs=1e-3)


def test_rgb_to_y_matches_skimage(benchmarks_dir: Path) -> None:
    hr = read_rgb(benchmarks_dir / "Set14" / "HR" / "img_005.png")
    every_value = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), axis=-1)
    synthetic = np.concatenate([every_value, every_value[..., :1][:, ::-1]], axis=-1).astype(np.uint8)
    for img in (hr, synthetic):
        y = rgb_to_y(img)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y, rgb2ycbcr(img)[..., 0], rtol=0, atol=1e-6)
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)


def test_identical_images(benchmarks_dir: Path) -> None:
    hr = read_rgb(benchmarks_dir / "Set5" / "HR" / "img_002.png")
    assert psnr(hr, hr.copy()) == float("inf")
    assert psnr(hr, hr.copy(), test_y_channel=True) == float("inf")
    assert ssim(hr, hr.copy()) == pytest.approx(1.0, abs=1e-12)


def test_mismatched_shapes_raise() -> None:
    a = np.zeros((32, 32, 3), np.uint8)
    b = np.zeros((32, 36, 3), np.uint8)
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(32, 36, 3\)"):
            fn(a, b)


def test_ssim_kernel_is_opencv_gaussian() -> None:
    np.testing.assert_allclose(_gaussian_1d(), cv2.getGaussianKernel(11, 1.5)[:, 0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_tensor_uint8_round_trip(data_range: float) -> None:
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = np.stack([img, img.T, 255 - img], axis=-1)
    t = uint8_to_tensor(img, data_range)
    assert t.dtype == torch.float32 and tuple(t.shape) == (1, 3, 16, 16)
    np.testing.assert_allclose(t[0, 0].numpy(), img[..., 0] / (255.0 / data_range), rtol=1e-6)
    out = tensor_to_uint8(t, data_range)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(tensor_to_uint8(t[0], data_range), img)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_tensor_to_uint8_clamps_and_rounds(data_range: float) -> None:
    levels = torch.tensor([-3.0, 0.2, 0.7, 2.5, 3.5, 254.6, 255.0, 300.0])
    t = (levels * (data_range / 255.0)).reshape(1, 1, 1, -1).expand(1, 3, 1, -1)
    expected = np.array([0, 0, 1, 2, 4, 255, 255, 255], dtype=np.uint8)  # half to even, as numpy
    np.testing.assert_array_equal(tensor_to_uint8(t, data_range)[0, :, 0], expected)


# --- one implementation for arrays and tensors, and the table every consumer reads ---------------


def _hr_and_noisy(benchmarks_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    hr = modcrop(read_rgb(benchmarks_dir / "Set5" / "HR" / f"{name}.png"), 4)
    noise = np.random.default_rng(7).normal(0.0, 6.0, size=hr.shape)
    return hr, np.clip(np.round(hr + noise), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("border", [4, 0])
@pytest.mark.parametrize("y", [False, True])
def test_tensors_give_the_arrays_values(benchmarks_dir: Path, border: int, y: bool) -> None:
    """The same functions on tensors: 0-dim float64 tensors (queued on their device) equal to float64 rounding."""
    hr, deg = _hr_and_noisy(benchmarks_dir, "img_003")
    a, b = torch.from_numpy(hr), torch.from_numpy(deg)
    for fn, tol in ((psnr, 1e-10), (ssim, 1e-12)):
        got = fn(a, b, border, y)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and got.ndim == 0
        assert float(got) == pytest.approx(fn(hr, deg, border, y), abs=tol)
    if not y:  # on RGB the squared errors are integers: the mean is exact, so PSNR is bit-identical
        assert float(psnr(a, b, border)) == psnr(hr, deg, border)


def test_tensor_edge_cases(benchmarks_dir: Path) -> None:
    hr, _ = _hr_and_noisy(benchmarks_dir, "img_002")
    t = torch.from_numpy(hr)
    assert float(psnr(t, t.clone())) == float("inf")
    assert float(ssim(t, t.clone())) == pytest.approx(1.0, abs=1e-12)
    gray = torch.from_numpy(hr[..., 0].copy())
    assert float(psnr(gray, gray // 2)) == pytest.approx(psnr(hr[..., 0], hr[..., 0] // 2), abs=1e-10)
    with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(32, 36, 3\)"):
        psnr(torch.zeros(32, 32, 3, dtype=torch.uint8), torch.zeros(32, 36, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="SSIM needs at least 11x11"):
        ssim(torch.zeros(16, 16, 3, dtype=torch.uint8), torch.zeros(16, 16, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="must be numpy arrays or both tensors"):
        psnr(hr, torch.from_numpy(hr))


def test_the_table_scores_every_metric_on_arrays_and_tensors(benchmarks_dir: Path) -> None:
    """Each row of METRICS computes its metric (PSNR rows against skimage, SSIM rows against ssim()), on both."""
    hr, deg = _hr_and_noisy(benchmarks_dir, "img_001")
    every = selected(ssim=True)
    assert [m.name for m in every] == list(METRICS) == ["psnr", "ssim", "psnr_y", "ssim_y"]
    assert [m.name for m in selected()] == ["psnr", "psnr_y"]  # SSIM only with --ssim, as the kits
    on_arrays = score_all(every, hr, deg, 4)
    on_tensors = score_all(every, torch.from_numpy(hr), torch.from_numpy(deg), 4)
    assert on_arrays["psnr"] == pytest.approx(peak_signal_noise_ratio(hr[4:-4, 4:-4], deg[4:-4, 4:-4], data_range=255),
                                              abs=1e-10)
    assert on_arrays["psnr_y"] == psnr(hr, deg, 4, test_y_channel=True)
    assert on_arrays["ssim_y"] == ssim(hr, deg, 4, test_y_channel=True)
    for name in METRICS:
        assert float(on_tensors[name]) == pytest.approx(on_arrays[name], abs=1e-10), name
    with pytest.raises(ValueError, match="no metric is switched on by"):
        selected(lpips=True)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_quantise_on_the_device_is_the_hosts(data_range: float) -> None:
    """quantise (kept on the tensor's device) and tensor_to_uint8 (on the host) give the same uint8 image,
    whatever the tensor's layout and precision; ties round half to even."""
    g = torch.Generator().manual_seed(3)
    t = (torch.rand(1, 3, 37, 41, generator=g) * 1.2 - 0.1) * data_range
    t[0, 0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 254.5]) * (data_range / 255.0)
    want = np.clip(np.round(t[0].permute(1, 2, 0).numpy().astype(np.float32) * np.float32(255.0) / np.float32(data_range)),
                   0, 255).astype(np.uint8)
    np.testing.assert_array_equal(tensor_to_uint8(t, data_range), want)
    assert list(tensor_to_uint8(t, data_range)[0, :4, 0]) == [0, 2, 2, 254]
    for candidate in (t, t.contiguous(memory_format=torch.channels_last), t.half()):
        got = quantise(candidate, data_range)
        assert got.dtype == torch.uint8 and got.is_contiguous()
        np.testing.assert_array_equal(got.numpy(), tensor_to_uint8(candidate, data_range))
