"""The one evaluation loop: sequential (the official kit's) and pipelined give the same records and SR pixels;
its stages (reader, gate, writer, tiling, fallbacks) and how it fails.

Independent references: the SR images are compared with a direct forward of the model quantised as the
official ``tensor2uint`` does (written out in the test), and PSNR with scikit-image on the saved PNGs.
No test here depends on wall-clock timing.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from esrkit import evaluation
from esrkit.datasets import modcrop, open_split
from esrkit.device import prepare_model
from esrkit.errors import KitError
from esrkit.evaluation import (CHALLENGE_ENGINE, OOM_FALLBACK_TILE, Evaluator, Gate, ImageWriter, LoopOptions,
                               forward_tiled)
from esrkit.fastpath import FAST, FastForward
from esrkit.imageio import read_rgb
from esrkit.metrics import selected
from esrkit.registry import get_entry

CPU = torch.device("cpu")
CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
PIPELINED = LoopOptions(pipelined=True, decode_workers=2, prefetch=2)


@pytest.fixture(scope="module")
def rfdn(official_weights_dir: Path) -> nn.Module:
    return prepare_model(get_entry("RFDN").load(official_weights_dir / "rfdn_ntire2023_team00.pth").model, CPU)


@pytest.fixture(scope="module")
def set5_three(benchmarks_dir: Path):
    split = open_split(benchmarks_dir / "Set5")
    return dataclasses.replace(split, pairs=split.pairs[:3])


def _evaluator(model: nn.Module, **kw) -> Evaluator:
    return Evaluator(model, scale=4, data_range=255.0, device=CPU, metrics=selected(ssim=True), **kw)


def _official_sr(model: nn.Module, lr: np.ndarray, data_range: float) -> np.ndarray:
    """The official path written out: uint8 HWC -> float32 / (255 / range) -> forward -> clamp, x255/range, round."""
    x = torch.from_numpy(lr).permute(2, 0, 1).float().div(255.0 / data_range).unsqueeze(0)
    with torch.no_grad():
        y = model(x)[0].clamp(0, data_range).permute(1, 2, 0).numpy()
    return np.uint8((y * 255.0 / data_range).round())


def test_pipelined_equals_sequential_and_the_official_path(tmp_path: Path, rfdn, set5_three) -> None:
    ref = _evaluator(rfdn).run(set5_three, tmp_path / "seq")
    got = _evaluator(rfdn, loop=PIPELINED, warm_runs=1).run(set5_three, tmp_path / "pipe")
    assert got.names == ref.names == ["img_001", "img_002", "img_003"] and got.split == "valid"
    assert got.engine == ref.engine == CHALLENGE_ENGINE and (ref.loop, got.loop) == ("sequential", "pipelined")
    assert got.metric_names == ref.metric_names == ("psnr", "ssim", "psnr_y", "ssim_y")
    for name in got.metric_names:  # on the host both loops compute the metrics with numpy: identical
        assert got.metric(name) == ref.metric(name), name
    assert len(got.runtime_ms) == 3 and all(ms > 0 for ms in got.runtime_ms)
    assert got.warm_runtime_ms is not None and len(got.warm_runtime_ms) == 3 and ref.warm_runtime_ms is None
    assert got.memory_mib is None and got.tiled == [] and got.wall_s > 0
    for pair, psnr in zip(set5_three.pairs, ref.metric("psnr")):
        saved = read_rgb(tmp_path / "seq" / f"{pair.name}.png")
        np.testing.assert_array_equal(read_rgb(tmp_path / "pipe" / f"{pair.name}.png"), saved)
        hr, lr = pair.load(4)
        np.testing.assert_array_equal(saved, _official_sr(rfdn, lr, 255.0))
        assert psnr == pytest.approx(peak_signal_noise_ratio(hr[4:-4, 4:-4], saved[4:-4, 4:-4], data_range=255),
                                     abs=1e-10)


def test_lr_only_split_gives_sr_images_and_no_metrics(tmp_path: Path, rfdn, set5_three) -> None:
    lr_only = dataclasses.replace(set5_three, pairs=tuple(dataclasses.replace(p, hr_path=None) for p in set5_three.pairs))
    ref = _evaluator(rfdn).run(lr_only, tmp_path / "seq")
    got = _evaluator(rfdn, loop=PIPELINED).run(lr_only, tmp_path / "pipe")
    assert got.names == ref.names and len(got.runtime_ms) == 3
    assert not got.has_metrics and not ref.has_metrics and got.metric("psnr") == []
    with pytest.raises(KitError, match="no psnr was measured"):
        got.mean("psnr")
    for pair in lr_only.pairs:
        sr = read_rgb(tmp_path / "pipe" / f"{pair.name}.png")
        np.testing.assert_array_equal(sr, read_rgb(tmp_path / "seq" / f"{pair.name}.png"))
        assert sr.shape[:2] == tuple(4 * n for n in read_rgb(pair.lr_path).shape[:2])


def test_fast_path_on_cpu_names_its_engine(rfdn, set5_three, capsys) -> None:
    ref = _evaluator(rfdn).run(set5_three)
    fast = FastForward(rfdn, CPU, FAST, copy_out=False)
    got = _evaluator(rfdn, fast=fast, loop=PIPELINED).run(set5_three)
    assert "cuda graphs need CUDA: running eager on cpu" in capsys.readouterr().err
    assert got.engine == fast.describe() and got.engine.startswith("fp32, eager, channels_last")
    assert got.names == ref.names
    assert max(abs(a - b) for a, b in zip(got.metric("psnr"), ref.metric("psnr"))) < 1e-3


class NaNAfter(nn.Module):
    """Nearest x4 upsampling that turns into NaN on the second image: broken weights, as seen by the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        y = nn.functional.interpolate(x, scale_factor=4, mode="nearest")
        return y * float("nan") if self.calls > 1 else y


@pytest.mark.parametrize("loop", [LoopOptions(), PIPELINED], ids=["sequential", "pipelined"])
def test_non_finite_output_is_an_error_naming_the_image(rfdn, set5_three, loop) -> None:
    with pytest.raises(KitError, match=r"broken\.pth gave \d+ non-finite value\(s\) \(NaN/Inf\) on img_002"):
        _evaluator(NaNAfter(), loop=loop, source="X with broken.pth").run(set5_three)


def test_write_error_is_reported_at_the_end(tmp_path: Path, rfdn, set5_three) -> None:
    (tmp_path / "valid").write_text("a file where the split's folder should be")
    with pytest.raises(KitError, match=r"could not write 3 of 3 SR image\(s\); the first, .*img_001\.png"):
        _evaluator(rfdn, loop=PIPELINED).run(set5_three, tmp_path / "valid")


def test_writer_surfaces_failures_and_bounds_memory(tmp_path: Path) -> None:
    written: list[str] = []

    def write(path: Path, rgb: np.ndarray) -> None:
        if path.name == "bad.png":
            raise OSError(28, "No space left on device")
        written.append(path.name)

    writer = ImageWriter(workers=2, max_pending=1, write=write)
    for name in ("a", "bad", "c"):
        writer.submit(tmp_path / f"{name}.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(KitError, match=r"1 of 3 .*bad\.png: No space left on device"):
        writer.close()
    assert sorted(written) == ["a.png", "c.png"]


def _esrkit_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("esrkit-")]


def test_decode_error_stops_the_loop_cleanly(tmp_path: Path, two_image_benchmark: Path, rfdn) -> None:
    root = two_image_benchmark
    (root / "LR_bicubic/X4/img_005x4.png").write_bytes(b"not a png")
    with pytest.raises(KitError, match="cannot decode image .*img_005x4.png"):
        _evaluator(rfdn, loop=PIPELINED).run(open_split(root), tmp_path / "sr")
    assert _esrkit_threads() == []  # the decoders and writers were joined before the error left the loop


def test_gate_holds_new_jobs_while_closed() -> None:
    gate = Gate()
    started = threading.Event()
    with gate.closed():
        worker = threading.Thread(target=gate.run, args=(started.set,))
        worker.start()
        assert not started.is_set()  # whatever the scheduling: a closed gate lets no job start
    worker.join(timeout=60)
    assert started.is_set() and not worker.is_alive()


def test_closing_the_gate_waits_for_the_jobs_already_running() -> None:
    """A job that started before the timed region is finished before the region starts (nothing runs beside it)."""
    gate = Gate()
    order: list[str] = []
    started, release = threading.Event(), threading.Event()

    def job() -> None:
        started.set()
        release.wait(60)
        order.append("job done")

    def timed_region() -> None:
        with gate.closed():
            order.append("timed region")

    worker = threading.Thread(target=gate.run, args=(job,))
    worker.start()
    assert started.wait(60)
    timer = threading.Thread(target=timed_region)
    timer.start()
    release.set()
    for thread in (worker, timer):
        thread.join(60)
    assert order == ["job done", "timed region"]


@pytest.mark.parametrize("loop", [LoopOptions(), PIPELINED], ids=["sequential", "pipelined"])
def test_a_forward_that_returns_no_image_is_one_line(set5_three, loop) -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(KitError, match=r"the model returned a tuple for img_001 \(LR 128x128\); an SR network returns"):
        _evaluator(Pair(), loop=loop).run(set5_three)


def test_tiles_blend_to_the_whole_image_for_a_pointwise_model() -> None:
    """A per-pixel model gives the same output tiled or whole: tiling and the overlap averaging are exact."""
    model = nn.Sequential(nn.Conv2d(3, 48, 1), nn.PixelShuffle(4))
    x = torch.rand(1, 3, 70, 53, generator=torch.Generator().manual_seed(0))
    tiles: list[tuple[int, int]] = []
    with torch.no_grad():
        whole = model(x)
        tiled = forward_tiled(model, x, 4, 32, 8, on_tile=lambda done, total: tiles.append((done, total)))
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)
    assert tiles[-1][0] == tiles[-1][1] == len(tiles) == 6  # rows at 0, 24, 38; columns at 0, 21


def _benchmark_folder(root: Path, lr_sizes: dict[str, tuple[int, int]]) -> Path:
    """A benchmark-layout folder of random images with the given LR sizes (HR = 4x)."""
    from esrkit.imageio import write_png

    rng = np.random.default_rng(0)
    for name, (h, w) in lr_sizes.items():
        write_png(root / "HR" / f"{name}.png", rng.integers(0, 256, (4 * h, 4 * w, 3), dtype=np.uint8))
        write_png(root / "LR_bicubic" / "X4" / f"{name}x4.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root


def test_cpu_out_of_memory_falls_back_to_tiles(tmp_path: Path, capsys) -> None:
    """An allocation that fails on the whole image is retried in tiles, said, and recorded; the following
    images are tiled too (as on the GPU)."""

    class Hungry(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if min(x.shape[-2:]) > OOM_FALLBACK_TILE:
                raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
            return nn.functional.interpolate(x, scale_factor=4, mode="nearest")

    split = open_split(_benchmark_folder(tmp_path / "big", {"a_small": (40, 48), "b_large": (300, 270), "c_small": (40, 40)}))
    record = _evaluator(Hungry()).run(split, tmp_path / "sr")
    assert record.oom_fallback == ["b_large"] and record.tiled == ["b_large", "c_small"]
    assert "b_large (270x300 LR) out of memory; falling back to tiled inference (tile 256" in capsys.readouterr().err
    lr = read_rgb(split.pairs[1].lr_path)
    np.testing.assert_array_equal(read_rgb(tmp_path / "sr" / "b_large.png"), lr.repeat(4, 0).repeat(4, 1))


def test_too_small_image_names_it_and_its_size(tmp_path: Path, rfdn) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    from esrkit.imageio import write_png

    write_png(folder / "speck.png", np.full((40, 40, 3), 128, np.uint8))
    split = open_split(folder, layout="folder")
    with pytest.raises(KitError, match=r"the model failed on speck \(LR 10x10\): RuntimeError: .*smaller than the network"):
        _evaluator(rfdn).run(split)


@CUDA_ONLY
def test_on_cuda_pipelined_equals_sequential_and_fast_is_close(tmp_path: Path, rfdn, set5_three) -> None:
    cuda = torch.device("cuda")
    model = prepare_model(copy.deepcopy(rfdn), cuda)
    common = dict(scale=4, data_range=255.0, device=cuda, metrics=selected(ssim=True))
    ref = Evaluator(model, **common).run(set5_three, tmp_path / "seq")
    got = Evaluator(model, **common, loop=PIPELINED).run(set5_three, tmp_path / "pipe")
    assert got.names == ref.names and got.engine == CHALLENGE_ENGINE
    for name in ("psnr", "ssim"):
        assert max(abs(a - b) for a, b in zip(got.metric(name), ref.metric(name))) <= 1e-9
    assert got.memory_mib is not None and got.memory_mib > 0
    for name in ref.names:
        np.testing.assert_array_equal(read_rgb(tmp_path / "pipe" / f"{name}.png"), read_rgb(tmp_path / "seq" / f"{name}.png"))
    fast = FastForward(model, cuda, FAST, copy_out=False)
    quick = Evaluator(model, **common, fast=fast, loop=PIPELINED).run(set5_three)
    assert quick.engine == "fp16, CUDA graphs, channels_last, cudnn autotune" and 1 <= fast.captures <= 3
    assert abs(quick.mean("psnr") - ref.mean("psnr")) < 0.01 and all(ms > 0 for ms in quick.runtime_ms)
    assert torch.backends.cudnn.benchmark is False


@CUDA_ONLY
def test_on_cuda_metrics_and_quantisation_match_the_host(benchmarks_dir: Path) -> None:
    from esrkit import metrics
    from esrkit.imageio import quantise, tensor_to_uint8

    hr = modcrop(read_rgb(benchmarks_dir / "Set5" / "HR" / "img_003.png"), 4)
    deg = np.clip(hr.astype(int) + np.random.default_rng(7).integers(-9, 9, hr.shape), 0, 255).astype(np.uint8)
    a, b = torch.from_numpy(hr).cuda(), torch.from_numpy(deg).cuda()
    assert float(metrics.psnr(a, b)) == pytest.approx(metrics.psnr(hr, deg), abs=1e-10)
    assert float(metrics.psnr(a, b, 4, True)) == pytest.approx(metrics.psnr(hr, deg, 4, True), abs=1e-10)
    assert float(metrics.ssim(a, b)) == pytest.approx(metrics.ssim(hr, deg), abs=1e-12)
    t = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(5)) * 300 - 20
    for data_range in (1.0, 255.0):
        scaled = t * (data_range / 255.0)
        np.testing.assert_array_equal(quantise(scaled.cuda(), data_range).cpu().numpy(), tensor_to_uint8(scaled, data_range))


def test_cpu_tiles_ahead_when_an_image_would_not_fit(tmp_path: Path, monkeypatch, capsys) -> None:
    """Before a forward that would exhaust the CPU's memory (predicted from the network's largest activation),
    the loop tiles, says so, and records it -- instead of computing for minutes and failing."""
    monkeypatch.setattr(evaluation, "CPU_PREDICT_ABOVE", 100)  # the prediction only runs for large LR images
    monkeypatch.setattr(evaluation, "available_memory_bytes", lambda: 64 * 1024)
    model = nn.Sequential(nn.Conv2d(3, 48, 1), nn.PixelShuffle(4))  # 48 floats per LR pixel
    split = open_split(_benchmark_folder(tmp_path / "big", {"wide": (40, 300)}))
    record = Evaluator(model, scale=4, data_range=255.0, device=CPU).run(split)
    assert record.oom_fallback == ["wide"] and record.tiled == ["wide"]
    err = capsys.readouterr().err
    assert "wide (300x40 LR) needs about" in err and "GiB available; falling back to tiled inference" in err
