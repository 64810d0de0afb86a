"""The pipelined validation loop against SplitRunner, its background writer, and the torch metrics."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import test_demo
from esrkit import metrics
from esrkit.datasets import modcrop, open_split
from esrkit.errors import KitError
from esrkit.fastpath import FAST, FastForward
from esrkit.imageio import read_rgb
from esrkit.pipeline import BackgroundWriter, Gate, PipelinedRunner
from esrkit.registry import get_entry
from esrkit.runner import CHALLENGE_ENGINE, SplitRunner, prepare_model

CPU = torch.device("cpu")
CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


# ------------------------------------------------------------------------------------------ torch metrics


def _hr_and_noisy(benchmarks_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    hr = modcrop(read_rgb(benchmarks_dir / "Set5" / "HR" / f"{name}.png"), 4)
    noise = np.random.default_rng(7).normal(0.0, 6.0, size=hr.shape)
    return hr, np.clip(np.round(hr + noise), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("border", [4, 0])
@pytest.mark.parametrize("y", [False, True])
def test_torch_metrics_equal_numpy(benchmarks_dir: Path, border: int, y: bool) -> None:
    hr, deg = _hr_and_noisy(benchmarks_dir, "img_003")
    a, b = torch.from_numpy(hr), torch.from_numpy(deg)
    got = metrics.psnr_torch(a, b, border, y)
    assert got.dtype == torch.float64 and got.ndim == 0
    assert float(got) == pytest.approx(metrics.psnr(hr, deg, border, y), abs=1e-10)
    assert float(metrics.ssim_torch(a, b, border, y)) == pytest.approx(metrics.ssim(hr, deg, border, y), abs=1e-12)


def test_torch_metrics_edge_cases(benchmarks_dir: Path) -> None:
    hr, _ = _hr_and_noisy(benchmarks_dir, "img_002")
    t = torch.from_numpy(hr)
    assert float(metrics.psnr_torch(t, t.clone())) == float("inf")
    assert float(metrics.ssim_torch(t, t.clone())) == pytest.approx(1.0, abs=1e-12)
    gray = torch.from_numpy(hr[..., 0].copy())
    assert float(metrics.psnr_torch(gray, gray // 2)) == pytest.approx(metrics.psnr(hr[..., 0], hr[..., 0] // 2), abs=1e-10)
    with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(32, 36, 3\)"):
        metrics.psnr_torch(torch.zeros(32, 32, 3, dtype=torch.uint8), torch.zeros(32, 36, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="SSIM needs at least 11x11"):
        metrics.ssim_torch(torch.zeros(16, 16, 3, dtype=torch.uint8), torch.zeros(16, 16, 3, dtype=torch.uint8))


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_tensor_to_uint8_torch_is_bit_identical(data_range: float) -> None:
    g = torch.Generator().manual_seed(3)
    t = (torch.rand(1, 3, 37, 41, generator=g) * 1.2 - 0.1) * data_range
    t[0, 0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 254.5]) * (data_range / 255.0)  # ties: half to even
    want = metrics.tensor_to_uint8(t, data_range)
    for candidate in (t, t.contiguous(memory_format=torch.channels_last), t.half()):
        got = metrics.tensor_to_uint8_torch(candidate, data_range)
        assert got.dtype == torch.uint8 and got.is_contiguous()
        np.testing.assert_array_equal(got.numpy(), metrics.tensor_to_uint8(candidate, data_range))
    np.testing.assert_array_equal(metrics.tensor_to_uint8_torch(t, data_range).numpy(), want)


# ------------------------------------------------------------------------------------------ the loop


@pytest.fixture(scope="module")
def rfdn(official_weights_dir: Path) -> torch.nn.Module:
    return prepare_model(get_entry("RFDN").load(official_weights_dir / "rfdn_ntire2023_team00.pth")[0], CPU)


@pytest.fixture(scope="module")
def set5_three(benchmarks_dir: Path):
    split = open_split(benchmarks_dir / "Set5")
    return dataclasses.replace(split, pairs=split.pairs[:3])


def _runner(cls, model, save_dir: Path | None, **kw):
    return cls(model, scale=4, data_range=255.0, device=CPU, ssim=True, save_dir=save_dir, **kw)


def test_pipelined_equals_split_runner(tmp_path: Path, rfdn, set5_three) -> None:
    ref = _runner(SplitRunner, rfdn, tmp_path / "seq").run(set5_three)
    lines: list[str] = []
    got = _runner(PipelinedRunner, rfdn, tmp_path / "pipe", decode_workers=2, prefetch=2, warm_runs=1,
                  progress=lines.append).run(set5_three)
    assert got.names == ref.names == ["img_001", "img_002", "img_003"] and got.split == "valid"
    assert got.engine == ref.engine == CHALLENGE_ENGINE
    for field in ("psnr", "psnr_y", "ssim", "ssim_y"):
        assert max(abs(a - b) for a, b in zip(getattr(got, field), getattr(ref, field))) <= 1e-9, field
    assert len(got.runtime_ms) == 3 and all(ms > 0 for ms in got.runtime_ms)
    assert got.warm_runtime_ms is not None and len(got.warm_runtime_ms) == 3
    assert got.memory_mib is None and got.tiled == []
    for name in ref.names:
        np.testing.assert_array_equal(read_rgb(tmp_path / "pipe" / "valid" / f"{name}.png"),
                                      read_rgb(tmp_path / "seq" / "valid" / f"{name}.png"))
    assert [line.split(":")[0] for line in lines] == [f"valid {k}/3 {n}" for k, n in enumerate(ref.names, 1)]


def test_pipelined_lr_only_equals_split_runner(tmp_path: Path, rfdn, set5_three) -> None:
    """LR-only (no HR): both loops give the same SR images of LR x 4 and no metrics."""
    lr_only = dataclasses.replace(set5_three, pairs=tuple(dataclasses.replace(p, hr_path=None) for p in set5_three.pairs))
    ref = _runner(SplitRunner, rfdn, tmp_path / "seq").run(lr_only)
    lines: list[str] = []
    got = _runner(PipelinedRunner, rfdn, tmp_path / "pipe", decode_workers=2, prefetch=2, progress=lines.append).run(lr_only)
    assert got.names == ref.names == ["img_001", "img_002", "img_003"] and len(got.runtime_ms) == 3
    assert not got.has_metrics and not ref.has_metrics and got.ssim == ref.ssim == []
    for pair in lr_only.pairs:
        sr = read_rgb(tmp_path / "pipe" / "valid" / f"{pair.name}.png")
        np.testing.assert_array_equal(sr, read_rgb(tmp_path / "seq" / "valid" / f"{pair.name}.png"))
        assert sr.shape[:2] == tuple(4 * n for n in read_rgb(pair.lr_path).shape[:2])
    assert all("no HR" in line for line in lines)


def test_fast_mode_on_cpu_names_its_engine(rfdn, set5_three, capsys) -> None:
    ref = _runner(SplitRunner, rfdn, None).run(set5_three)
    fast = FastForward(rfdn, CPU, FAST, copy_out=False)
    got = _runner(PipelinedRunner, rfdn, None, fast=fast).run(set5_three)
    assert "cuda graphs need CUDA: running eager on cpu" in capsys.readouterr().err
    assert got.engine == fast.describe() and got.engine.startswith("fp32, eager, channels_last")
    assert got.names == ref.names
    assert max(abs(a - b) for a, b in zip(got.psnr, ref.psnr)) < 1e-3


def test_write_error_is_reported_at_the_end(tmp_path: Path, rfdn, set5_three) -> None:
    save = tmp_path / "sr"
    save.mkdir()
    (save / "valid").write_text("a file where the split's folder should be")
    with pytest.raises(KitError, match=r"could not write 3 of 3 SR image\(s\); the first, .*img_001\.png"):
        _runner(PipelinedRunner, rfdn, save).run(set5_three)


def test_background_writer_surfaces_failures_and_bounds_memory(tmp_path: Path) -> None:
    written: list[str] = []

    def write(path: Path, rgb: np.ndarray) -> None:
        if path.name == "bad.png":
            raise OSError(28, "No space left on device")
        written.append(path.name)

    writer = BackgroundWriter(workers=2, max_pending=1)
    for name in ("a", "bad", "c"):
        writer.submit(tmp_path / f"{name}.png", np.zeros((2, 2, 3), np.uint8), write)
    with pytest.raises(KitError, match=r"1 of 3 .*bad\.png: No space left on device"):
        writer.close()
    assert sorted(written) == ["a.png", "c.png"]


def test_decode_error_stops_the_loop_cleanly(tmp_path: Path, benchmarks_dir: Path, rfdn) -> None:
    root = tmp_path / "mini"
    for sub, suffix in (("HR", ""), ("LR_bicubic/X4", "x4")):
        (root / sub).mkdir(parents=True)
        for name in ("img_002", "img_005"):
            shutil.copy(benchmarks_dir / "Set5" / sub / f"{name}{suffix}.png", root / sub / f"{name}{suffix}.png")
    (root / "LR_bicubic/X4/img_005x4.png").write_bytes(b"not a png")
    threads = threading.active_count()
    with pytest.raises(KitError, match="cannot decode image .*img_005x4.png"):
        _runner(PipelinedRunner, rfdn, tmp_path / "sr").run(open_split(root))
    time.sleep(0.05)
    assert threading.active_count() <= threads  # decoders and writers are gone


def test_gate_holds_new_jobs_while_closed() -> None:
    gate = Gate()
    started = threading.Event()
    gate.close()
    worker = threading.Thread(target=gate.run, args=(started.set,))
    worker.start()
    assert not started.wait(0.05)
    gate.open()
    assert started.wait(1.0)
    worker.join()


@CUDA_ONLY
def test_on_cuda_pipelined_equals_split_runner_and_fast_is_close(tmp_path: Path, rfdn, set5_three) -> None:
    cuda = torch.device("cuda")
    model = prepare_model(copy.deepcopy(rfdn), cuda)
    common = dict(scale=4, data_range=255.0, device=cuda, ssim=True)
    ref = SplitRunner(model, **common, save_dir=tmp_path / "seq").run(set5_three)
    got = PipelinedRunner(model, **common, save_dir=tmp_path / "pipe").run(set5_three)
    assert got.names == ref.names and got.engine == CHALLENGE_ENGINE
    assert max(abs(a - b) for a, b in zip(got.psnr, ref.psnr)) <= 1e-9
    assert max(abs(a - b) for a, b in zip(got.ssim, ref.ssim)) <= 1e-9
    assert got.memory_mib is not None and got.memory_mib > 0
    for name in ref.names:
        np.testing.assert_array_equal(read_rgb(tmp_path / "pipe" / "valid" / f"{name}.png"),
                                      read_rgb(tmp_path / "seq" / "valid" / f"{name}.png"))
    fast = FastForward(model, cuda, FAST, copy_out=False)
    quick = PipelinedRunner(model, **common, fast=fast).run(set5_three)
    assert quick.engine == "fp16, CUDA graphs, channels_last, cudnn autotune" and 1 <= fast.captures <= 3
    assert abs(sum(quick.psnr) - sum(ref.psnr)) / 3 < 0.01 and all(ms > 0 for ms in quick.runtime_ms)
    assert torch.backends.cudnn.benchmark is False


@CUDA_ONLY
def test_on_cuda_torch_metrics_and_quantisation_match(benchmarks_dir: Path) -> None:
    hr, deg = _hr_and_noisy(benchmarks_dir, "img_003")
    a, b = torch.from_numpy(hr).cuda(), torch.from_numpy(deg).cuda()
    assert float(metrics.psnr_torch(a, b)) == pytest.approx(metrics.psnr(hr, deg), abs=1e-10)
    assert float(metrics.psnr_torch(a, b, 4, True)) == pytest.approx(metrics.psnr(hr, deg, 4, True), abs=1e-10)
    assert float(metrics.ssim_torch(a, b)) == pytest.approx(metrics.ssim(hr, deg), abs=1e-12)
    t = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(5)) * 300 - 20
    for data_range in (1.0, 255.0):
        scaled = t * (data_range / 255.0)
        np.testing.assert_array_equal(metrics.tensor_to_uint8_torch(scaled.cuda(), data_range).cpu().numpy(),
                                      metrics.tensor_to_uint8(scaled, data_range))


# ------------------------------------------------------------------------------------------ test_demo.py


def test_demo_pipeline_and_fast_keys(tmp_path: Path, benchmarks_dir: Path) -> None:
    pytest.importorskip("fvcore")  # test_demo.py reports fvcore's FLOPs too
    root = tmp_path / "mini"
    for sub, suffix in (("HR", ""), ("LR_bicubic/X4", "x4")):
        (root / sub).mkdir(parents=True)
        shutil.copy(benchmarks_dir / "Set5" / sub / f"img_002{suffix}.png", root / sub / f"img_002{suffix}.png")
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(get_entry("MLRN-entire").build().state_dict(), weights)
    common = ["--data_dir", str(root), "--weights", str(weights), "--runs", "0", "--save_dir", str(tmp_path / "sr")]
    assert test_demo.main([*common, "--results_dir", str(tmp_path / "a")]) == 0
    assert test_demo.main([*common, "--results_dir", str(tmp_path / "b"), "--pipeline", "--fast"]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())["10_MLRN-entire"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["10_MLRN-entire"]
    assert a["loop"] == "sequential" and b["loop"] == "pipelined"
    assert b["valid_psnr"] == pytest.approx(a["valid_psnr"], abs=1e-9) and b["valid_images"] == a["valid_images"]
    for key in ("valid_runtime", "valid_ave_runtime", "valid_psnr", "valid_ave_psnr", "valid_memory"):
        assert key in b  # the official keys stay the challenge pass's
    assert "valid_fast_runtime" not in a and "fast_engine" not in a
    assert b["fast_engine"].startswith("fp32, eager, channels_last [cpu fallback")
    assert len(b["valid_fast_runtime"]) == 1 and abs(b["valid_fast_ave_psnr"] - b["valid_ave_psnr"]) < 1e-3
    assert b["valid_fast_psnr_diff_max"] < 1e-3 and "valid_fast_cold_runtime" not in b
