"""test_demo.py end to end on small fixtures, and every bad input it must survive."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

import test_demo
from esrkit.datasets import modcrop, open_split
from esrkit.device import prepare_model
from esrkit.evaluation import Evaluator
from esrkit.imageio import read_rgb, write_png
from esrkit.registry import get_entry


@pytest.fixture()
def test_weights(tmp_path: Path) -> Path:
    """MLRN-entire weights the test makes itself (seeded init), not a trained model."""
    torch.manual_seed(0)
    path = tmp_path / "mlrn_test_weights.pth"
    torch.save(get_entry("MLRN-entire").build().state_dict(), path)
    return path


def run_cli(tmp_path: Path, *args: str) -> int:
    return test_demo.main(["--results_dir", str(tmp_path / "out"), "--save_dir", str(tmp_path / "sr"), "--runs", "1", *args])


def test_end_to_end_official_keys_and_independent_psnr(tmp_path, two_image_benchmark, test_weights, capsys) -> None:
    rc = run_cli(tmp_path, "--data_dir", str(two_image_benchmark), "--weights", str(test_weights), "--ssim")
    assert rc == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    rec = data["10_MLRN-entire"]
    for key in ("valid_runtime", "valid_psnr", "valid_ssim", "valid_memory", "valid_ave_runtime", "valid_ave_psnr",
                "valid_ave_ssim", "num_parameters", "flops", "activations", "num_conv"):
        assert key in rec
    assert rec["num_parameters"] == pytest.approx(0.274710) and rec["num_conv"] == 43
    assert rec["flops"] == pytest.approx(16.854452224) and rec["activations"] == pytest.approx(97.870976)
    assert rec["valid_images"] == ["img_002", "img_005"] and len(rec["valid_runtime"]) == 2
    # The PSNR the kit reports equals scikit-image's on the SR image it saved (4-px border, modcropped HR).
    for name, value in zip(rec["valid_images"], rec["valid_psnr"]):
        sr = read_rgb(tmp_path / "sr" / "10_MLRN-entire" / "valid" / f"{name}.png")
        hr = modcrop(read_rgb(two_image_benchmark / "HR" / f"{name}.png"), 4)
        assert value == pytest.approx(peak_signal_noise_ratio(hr[4:-4, 4:-4], sr[4:-4, 4:-4], data_range=255), abs=1e-4)
    assert "10_MLRN-entire" in (tmp_path / "out" / "results.txt").read_text()
    assert "Y-PSNR" in capsys.readouterr().out


def test_second_entry_is_merged_not_overwritten(tmp_path, two_image_benchmark, test_weights, official_weights_dir) -> None:
    assert run_cli(tmp_path, "--data_dir", str(two_image_benchmark), "--weights", str(test_weights), "--no_save") == 0
    rfdn = official_weights_dir / "rfdn_ntire2023_team00.pth"
    assert run_cli(tmp_path, "--data_dir", str(two_image_benchmark), "--model_id", "0", "--weights", str(rfdn), "--no_save") == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(data) == {"10_MLRN-entire", "00_RFDN"}
    assert len((tmp_path / "out" / "results.txt").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model_id", "MLRN-entrie"], "unknown entry 'MLRN-entrie'. Did you mean 'MLRN-entire'?"),
        (["--weights", "{tmp}/missing.pth"], "weights for MLRN-entire not found: expected"),
        (["--data_dir", "{tmp}/no_such_dir"], "does not exist"),
        (["--save_dir", "{tmp}/a_file/sub"], "--save_dir"),
        (["--include_test"], "layout 'benchmark' has no 'test' split"),
        (["--model_id", "RFDN"], "does not fit RFDN"),
        (["--runs", "-3"], "--runs -3: give the number of warm repeats per image"),
        (["--tile_overlap", "300"], "--tile_overlap 300 must be smaller than the tile (256 LR pixels)"),
        (["--model_file", "{tmp}/x.py", "--scale", "0"], "scale 0 must be a positive upscaling factor"),
        (["--results_dir", "{tmp}/a_file/out"], "--results_dir"),
        (["--model_file", "{tmp}/no_such_team.py"], "model file not found"),
        (["--model_id", "RFDN", "--model_file", "{tmp}/x.py"], "both name an entry: give one of them"),
        (["--device", "gpu0"], "unknown device 'gpu0'"),
        pytest.param(["--device", "cuda"], "CUDA is not available here",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
        (["--tile", "4"], "--tile 4 is too small"),
        (["--hybrid_test", "--include_test"], "drop --include_test"),
    ],
)
def test_bad_input_is_one_clear_line_and_keeps_results(tmp_path, two_image_benchmark, test_weights, capsys, args, message) -> None:
    (tmp_path / "a_file").write_text("x")
    previous = '{"00_Kept": {"flops": 1.0}}'
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text(previous)
    defaults = {"--data_dir": str(two_image_benchmark), "--weights": str(test_weights)}
    argv = [a.format(tmp=tmp_path) for a in args]
    for flag, value in defaults.items():
        if flag not in argv:
            argv += [flag, value]
    rc = run_cli(tmp_path, *argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert (tmp_path / "out" / "results.json").read_text() == previous


def test_missing_default_weights_say_where_they_are_expected(tmp_path, two_image_benchmark, capsys) -> None:
    rc = run_cli(tmp_path, "--data_dir", str(two_image_benchmark), "--model_id", "IMDN")
    assert rc == 2 and "model_zoo/imdn_baseline.pth; put the file there or pass --weights PATH" in capsys.readouterr().err


def test_tiled_inference_matches_whole_image(benchmarks_dir, official_weights_dir) -> None:
    entry = get_entry("RFDN")
    model = prepare_model(entry.load(official_weights_dir / "rfdn_ntire2023_team00.pth").model, torch.device("cpu"))
    split = open_split(benchmarks_dir / "Set14")
    split = type(split)(split.name, split.layout, split.root, split.pairs[2:3])
    kwargs = dict(scale=4, data_range=entry.data_range, device=torch.device("cpu"))
    whole = Evaluator(model, **kwargs).run(split).metric("psnr")[0]
    tiled = Evaluator(model, tile=48, tile_overlap=16, **kwargs).run(split)
    assert tiled.tiled == [split.pairs[0].name]
    assert abs(tiled.metric("psnr")[0] - whole) < 0.05


class _OomAbove(torch.nn.Module):
    """Upscales x4 by repetition; raises CUDA OOM for inputs wider than ``limit`` (simulates a small GPU)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)


def test_out_of_memory_falls_back_to_tiling(tmp_path, capsys) -> None:
    hr = np.random.default_rng(0).integers(0, 256, (4 * 300, 4 * 300, 3), dtype=np.uint8)
    write_png(tmp_path / "HR" / "big.png", hr)
    write_png(tmp_path / "LR_bicubic" / "X4" / "bigx4.png", hr[::4, ::4])
    result = Evaluator(_OomAbove(limit=256), scale=4, data_range=255.0, device=torch.device("cpu")).run(open_split(tmp_path))
    assert result.oom_fallback == ["big"] and result.tiled == ["big"]
    assert "falling back to tiled inference" in capsys.readouterr().err


def test_lr_only_run_writes_sr_images_and_no_psnr(tmp_path, two_image_benchmark, test_weights, capsys) -> None:
    """Without HR (the 2024/2025 test phase): the same SR images as a paired run, runtimes, and no PSNR keys."""
    assert run_cli(tmp_path / "paired", "--data_dir", str(two_image_benchmark), "--weights", str(test_weights)) == 0
    shutil.rmtree(two_image_benchmark / "HR")
    assert run_cli(tmp_path, "--data_dir", str(two_image_benchmark), "--weights", str(test_weights)) == 2
    assert "with --lr_only" in capsys.readouterr().err
    assert run_cli(tmp_path, "--data_dir", str(two_image_benchmark), "--weights", str(test_weights), "--lr_only") == 0
    assert "LR only: no PSNR" in capsys.readouterr().out
    rec = json.loads((tmp_path / "out" / "results.json").read_text())["10_MLRN-entire"]
    assert rec["valid_lr_only"] is True and rec["lr_only"] is True and len(rec["valid_runtime"]) == 2
    assert not [key for key in rec if "psnr" in key or "ssim" in key]
    row = (tmp_path / "out" / "results.txt").read_text().splitlines()[1].split("\t")
    assert row[0].strip() == "10_MLRN-entire" and row[1].strip() == "-"
    for name in ("img_002", "img_005"):
        sr = read_rgb(tmp_path / "sr" / "10_MLRN-entire" / "valid" / f"{name}.png")
        assert np.array_equal(sr, read_rgb(tmp_path / "paired" / "sr" / "10_MLRN-entire" / "valid" / f"{name}.png"))
        assert sr.shape[:2] == tuple(4 * n for n in read_rgb(two_image_benchmark / "LR_bicubic/X4" / f"{name}x4.png").shape[:2])


def test_image_too_small_for_the_network_is_one_line(tmp_path, test_weights, capsys) -> None:
    """A 40x40 photo gives a 10x10 LR, below what ESA's pooling accepts: a one-line error naming the image."""
    folder = tmp_path / "photos"
    write_png(folder / "tiny.png", np.zeros((40, 40, 3), np.uint8))
    assert run_cli(tmp_path, "--data_dir", str(folder), "--weights", str(test_weights)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the model failed on tiny (LR 10x10)") and "remove or enlarge it" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out" / "results.json").exists()


def test_the_default_warm_pass_is_a_sample_and_the_pipeline_is_not_used_where_it_cannot_win(tmp_path, capsys,
                                                                                           benchmarks_dir) -> None:
    """The default run's extra figures cost a fraction of the challenge pass (warm timing on a spread sample of the
    images, said in the output); --pipeline on a CPU runs the sequential loop and says why."""
    import test_demo
    from tests.conftest import copy_benchmark, torch_threads

    data = copy_benchmark(tmp_path / "set14", benchmarks_dir / "Set14", tuple(f"img_{i:03d}" for i in range(1, 13)))
    with torch_threads(1):
        assert test_demo.main(["--data_dir", str(data), "--results_dir", str(tmp_path), "--no_save", "--quiet",
                               "--warm_images", "3", "--pipeline", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "note: --pipeline runs the sequential loop on a CPU" in out
    assert "(mean of per-image medians of 3 of the 12 images, spread evenly;" in out
    entry = json.loads((tmp_path / "results.json").read_text())["10_MLRN-entire"]
    assert entry["loop"] == "sequential" and entry["valid_warm_images"] == ["img_001", "img_007", "img_012"]
