"""Training: aligned on-device crops, data loading rules, a tiny run, exact resume, errors, 2-process DDP.

Everything runs on the CPU with MLRN-entire on 64 px HR patches, batch 4, a few dozen iterations.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from esrkit.checkpoint import load_weights, read_checkpoint
from esrkit.datasets import modcrop
from esrkit.errors import KitError
from esrkit.imageio import read_rgb, write_png
from esrkit.imresize import imresize
from esrkit.registry import REPO_ROOT, get_entry
from esrkit.train import main
from esrkit.training import checkpointing, data
from esrkit.training.data import PatchSampler, TrainingImages, load_training_images
from esrkit.training.loop import TrainConfig, build_scheduler, merge_resume_config

ITERS = 40


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, benchmarks_dir: Path) -> Path:
    """Six 96x128 crops of shared training photos, in two nested folders (the search is recursive)."""
    source = benchmarks_dir.parent / "train" / "bsd200"
    if not source.is_dir():
        pytest.skip(f"{source} is not available")
    root = tmp_path_factory.mktemp("photos")
    for i, path in enumerate(sorted(source.glob("*.webp"))[:6]):
        write_png(root / f"part{i % 2}" / "deeper" / f"{path.stem}.png", read_rgb(path)[:96, :128])
    return root


@pytest.fixture(scope="module")
def set5(benchmarks_dir: Path) -> Path:
    return benchmarks_dir / "Set5"


def base_args(photos: Path, set5: Path, out: Path, iters: int = ITERS) -> list[str]:
    return ["--train_dir", str(photos), "--val_dir", str(set5), "--out_dir", str(out), "--iters", str(iters),
            "--patch_size", "64", "--batch_size", "4", "--lr_step", "1000", "--log_every", "1",
            "--val_every", str(ITERS), "--save_every", "20", "--ema", "0.99", "--device", "cpu",
            "--workers", "2", "--no_progress"]


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, photos: Path, set5: Path) -> dict[str, Path]:
    """Run ``full`` for 40 iterations; ``half`` for 20, then resumed from its last.pth up to 40."""
    root = tmp_path_factory.mktemp("runs")
    assert main(base_args(photos, set5, root / "full")) == 0
    assert main(base_args(photos, set5, root / "half", iters=20)) == 0
    assert main(["--resume", str(root / "half" / "last.pth"), "--iters", str(ITERS), "--no_progress"]) == 0
    return {"full": root / "full", "resumed": root / "half"}


# -- on-device cropping ----------------------------------------------------------------------------

def small_set(scale: int = 4) -> TrainingImages:
    rng = np.random.default_rng(1)
    hr = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 48), (44, 36), (52, 60))]
    hr = [modcrop(a, scale) for a in hr]
    return TrainingImages([f"img{i}" for i in range(3)], hr, [imresize(a, 1 / scale) for a in hr], scale)


def reference_patch(img: np.ndarray, top: int, left: int, size: int, v: bool, h: bool, t: bool) -> np.ndarray:
    patch = img[top:top + size, left:left + size]
    patch = patch[::-1] if v else patch
    patch = patch[:, ::-1] if h else patch
    return patch.transpose(1, 0, 2) if t else patch


def test_sampler_crops_are_aligned_and_augmented_like_the_reference() -> None:
    images = small_set()
    sampler = PatchSampler(images, patch_size=16, seed=3, data_device=torch.device("cpu"))
    params = sampler.draw(256)
    lr, hr = sampler.crop(params)
    assert lr.shape == (256, 4, 4, 3) and hr.shape == (256, 16, 16, 3) and lr.dtype == torch.uint8
    combos = set()
    for b in range(256):
        i, top, left = int(params.index[b]), int(params.top[b]), int(params.left[b])
        flags = (bool(params.vflip[b]), bool(params.hflip[b]), bool(params.transpose[b]))
        combos.add(flags)
        assert np.array_equal(lr[b].numpy(), reference_patch(images.lr[i], top, left, 4, *flags))
        assert np.array_equal(hr[b].numpy(), reference_patch(images.hr[i], 4 * top, 4 * left, 16, *flags))
    assert len(combos) == 8  # identity, flips, 90/180/270 rotations and both transposes
    assert set(params.index.tolist()) == {0, 1, 2}


def test_sampler_stream_is_fixed_by_the_seed_and_the_generator_state() -> None:
    images = small_set()
    a = PatchSampler(images, 16, seed=5, data_device=torch.device("cpu"))
    b = PatchSampler(images, 16, seed=5, data_device=torch.device("cpu"))
    a.sample(8)
    b.set_state(a.get_state())
    assert all(torch.equal(x, y) for x, y in zip(a.sample(8), b.sample(8)))


# -- loading rules ---------------------------------------------------------------------------------

def test_small_and_corrupt_images_are_skipped_and_reported(tmp_path: Path, photos: Path, capsys) -> None:
    good = sorted(photos.rglob("*.png"))[:2]
    for path in good:
        write_png(tmp_path / path.name, read_rgb(path))
    write_png(tmp_path / "tiny.png", np.zeros((40, 200, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_training_images([tmp_path], scale=4, patch_size=64, workers=2, progress=False)
    err = capsys.readouterr().err
    assert len(images.hr) == 2 and all(lr.shape[0] * 4 == hr.shape[0] for hr, lr in zip(images.hr, images.lr))
    assert len(images.too_small) == 1 and "skipped 1 of 4 image(s) smaller than the 64x64" in err
    assert len(images.unreadable) == 1 and "broken.png" in err


def test_no_usable_images_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="no image files under"):
        load_training_images([tmp_path], 4, 64, progress=False)
    with pytest.raises(KitError, match="does not exist"):
        load_training_images([tmp_path / "missing"], 4, 64, progress=False)
    write_png(tmp_path / "a.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(KitError, match="smaller than the 64px patch"):
        load_training_images([tmp_path], 4, 64, progress=False)


def test_lr_cache_is_reused_until_the_file_changes(tmp_path: Path, photos: Path, monkeypatch) -> None:
    src = sorted(photos.rglob("*.png"))[0]
    img = tmp_path / "img" / "a.png"
    write_png(img, read_rgb(src))
    first = load_training_images([img.parent], 4, 64, cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(first.lr[0], imresize(modcrop(read_rgb(img), 4), 0.25))
    calls = []
    monkeypatch.setattr(data, "imresize", lambda hr, s: calls.append(1) or imresize(hr, s))
    again = load_training_images([img.parent], 4, 64, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [] and np.array_equal(again.lr[0], first.lr[0])
    os.utime(img, ns=(1, 1))  # a changed mtime is a new key
    load_training_images([img.parent], 4, 64, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [1]


# -- the run ---------------------------------------------------------------------------------------

def test_tiny_run_lowers_the_loss_and_writes_its_outputs(runs: dict[str, Path]) -> None:
    out = runs["full"]
    rows = read_log(out)
    assert [int(r["step"]) for r in rows] == list(range(1, ITERS + 1))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:10])
    assert float(rows[-1]["val_psnr"]) > 10 and float(rows[-1]["val_y_psnr"]) > 10  # EMA weights, 40 iterations
    assert all(float(r["patches_per_s"]) > 0 for r in rows)
    for name in ("last.pth", "best.pth", "best_weights.pth", "curves.png"):
        assert (out / name).stat().st_size > 0
    entry = get_entry("MLRN-entire")
    load_weights(entry.build(), out / "best_weights.pth")  # strict, plain state_dict
    load_weights(entry.build(), out / "last.pth")  # the training checkpoint loads as weights too (EMA first)
    assert torch.equal(read_checkpoint(out / "last.pth")["conv_1.weight"],
                       torch.load(out / "last.pth", weights_only=True)["params_ema"]["conv_1.weight"])


def test_resume_continues_exactly(runs: dict[str, Path]) -> None:
    full, resumed = read_log(runs["full"]), read_log(runs["resumed"])
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]  # same loss at every step, to the bit
    assert resumed[-1]["val_psnr"] == full[-1]["val_psnr"]
    assert float(resumed[19]["val_psnr"]) < float(resumed[-1]["val_psnr"])  # the half run validated at 20
    a = torch.load(runs["full"] / "last.pth", weights_only=True)
    b = torch.load(runs["resumed"] / "last.pth", weights_only=True)
    assert a["step"] == b["step"] == ITERS
    for key in ("params", "params_ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])
    assert torch.equal(a["sampler_states"][0], b["sampler_states"][0])


def test_resume_refuses_a_changed_recipe_and_a_reused_out_dir(
    runs: dict[str, Path], photos: Path, set5: Path, capsys
) -> None:
    assert main(["--resume", str(runs["full"] / "last.pth"), "--lr", "0.001", "--no_progress"]) == 1
    assert "--lr 0.001 differs from the resumed run's 0.0005" in capsys.readouterr().err
    assert main(base_args(photos, set5, runs["full"])) == 1
    assert "already holds a run" in capsys.readouterr().err


def test_warm_start(tmp_path: Path, runs: dict[str, Path], photos: Path, set5: Path, capsys) -> None:
    other = tmp_path / "mlrn_x4_paper.pth"
    torch.save(get_entry("MLRN-x4").build().state_dict(), other)  # 6 blocks, 58 channels
    assert main([*base_args(photos, set5, tmp_path / "a", iters=1), "--warm_start", str(other)]) == 1
    err = capsys.readouterr().err
    assert "--warm_start" in err and "does not fit MLRN" in err and len(err.strip().splitlines()) == 1
    args = [*base_args(photos, set5, tmp_path / "b", iters=1), "--val_every", "0",
            "--warm_start", str(runs["full"] / "best_weights.pth")]
    assert main(args) == 0


@pytest.mark.parametrize("extra, message", [
    (["--patch_size", "48"], "cannot take 12x12 LR patches"),
    (["--val_dir", "/nonexistent/Set5"], "or --val_dir none"),
    (["--batch_size", "0"], "--batch_size must be positive"),
])
def test_bad_options_are_clear_errors(tmp_path: Path, photos: Path, set5: Path, capsys, extra, message) -> None:
    assert main([*base_args(photos, set5, tmp_path / "run"), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "last.pth"
    checkpointing.save_checkpoint(path, {"step": 1})

    def disk_full(obj, f):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    assert checkpointing.try_save(path, {"step": 2}, "checkpoint") is False
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_schedules_and_resume_config() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    lrs = {}
    for schedule in ("step", "cosine"):
        cfg = TrainConfig(train_dir=["x"], iters=100, lr_step=25, schedule=schedule, lr_min=1e-6)
        opt = torch.optim.Adam([param], lr=cfg.lr)
        sched = build_scheduler(opt, cfg)
        lrs[schedule] = []
        for _ in range(100):
            lrs[schedule].append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        lrs[schedule].append(opt.param_groups[0]["lr"])
    assert lrs["step"][0] == lrs["step"][24] == 5e-4 and lrs["step"][25] == 2.5e-4 and lrs["step"][100] == 5e-4 / 16
    assert math.isclose(lrs["cosine"][50], (5e-4 + 1e-6) / 2) and math.isclose(lrs["cosine"][100], 1e-6)
    saved = {**TrainConfig(train_dir=["a"], iters=10).__dict__}
    assert merge_resume_config(saved, {"iters": 20, "train_dir": ["b"]}).train_dir == ["b"]
    with pytest.raises(KitError, match="--batch_size 8 differs"):
        merge_resume_config(saved, {"batch_size": 8})


# -- two processes ---------------------------------------------------------------------------------

def test_two_process_gloo_run(tmp_path: Path, runs: dict[str, Path], photos: Path, set5: Path) -> None:
    out = tmp_path / "ddp"
    args = [*base_args(photos, set5, out), "--batch_size", "8", "--save_every", str(ITERS), "--workers", "1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "esrkit.train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("training MLRN-entire") == 1 and "x2 process(es)" in proc.stderr  # rank 0 reports
    rows = read_log(out)
    assert len(rows) == ITERS and rows[-1]["val_psnr"]
    ddp = [float(r["loss"]) for r in rows]
    single = [float(r["loss"]) for r in read_log(runs["full"])]
    for curve in (ddp, single):  # both fall the same way (4 samples per rank here, 4 in one process there)
        assert np.mean(curve[-10:]) < 0.75 * np.mean(curve[:10])
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["world_size"] == 2 and len(state["sampler_states"]) == 2
    assert not torch.equal(state["sampler_states"][0], state["sampler_states"][1])  # one crop stream per rank
