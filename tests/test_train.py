"""Training: aligned on-device crops, data loading rules, a tiny run, exact resume, errors, 2-process DDP,
and the CLI's robustness: outputs checked before any work, Ctrl-C, exit codes, quiet progress.

Everything runs on the CPU (one thread: steady on a shared machine) with MLRN-entire on 64 px HR
patches, batch 4, a few dozen iterations. Ctrl-C is simulated: a ``train_step`` that raises
KeyboardInterrupt, or one that sends this process SIGINT; SIGTERM is sent to a training process.
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import train_throughput
from esrkit.checkpoint import load_weights, read_checkpoint, select_state_dict
from esrkit.cli import EXIT_INTERRUPTED, EXIT_USAGE
from esrkit.datasets import modcrop
from esrkit.errors import KitError
from esrkit.imageio import read_rgb, write_png
from esrkit.imresize import imresize
from esrkit.paths import REPO_ROOT
from esrkit.registry import get_entry
from esrkit.train import main
from esrkit.training import checkpointing, data, loop
from esrkit.training.data import PatchSampler, TrainingImages, load_training_images
from esrkit.training.loop import Trainer, TrainConfig, build_scheduler, default_val_dir, merge_resume_config
from tests.conftest import torch_threads

ITERS = 40


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


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
def ddp_run(tmp_path_factory: pytest.TempPathFactory, photos: Path, set5: Path):
    """A 2-process torchrun run, started in the background (mostly importing torch, on the core this
    process leaves idle); :func:`test_two_process_gloo_run` waits for it and judges it."""
    root = tmp_path_factory.mktemp("ddp")
    args = [*base_args(photos, set5, root / "run"), "--batch_size", "8", "--save_every", str(ITERS), "--workers", "1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "esrkit.train", *args]
    with open(root / "stderr.txt", "w+") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        try:
            yield proc, root / "run", stderr
        finally:
            if proc.poll() is None:  # its test was not run: stop it (torchrun stops its workers)
                proc.terminate()
                proc.wait(timeout=60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, photos: Path, set5: Path, one_thread, ddp_run) -> dict[str, Path]:
    """Run ``full`` for 40 iterations; ``half`` for 20, then resumed from its last.pth up to 40 (the
    2-process run goes on beside them)."""
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
    load_weights(entry.build(), out / "last.pth")  # the training checkpoint loads as weights too (its EMA)
    state, where = select_state_dict(read_checkpoint(out / "last.pth"))
    assert where == "params_ema"  # the kit's own format says so: not an ambiguous pair of weights
    assert torch.equal(state["conv_1.weight"],
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
    assert main(["--resume", str(runs["full"] / "last.pth"), "--lr", "0.001", "--no_progress"]) == EXIT_USAGE
    assert "--lr 0.001 differs from the resumed run's 0.0005" in capsys.readouterr().err
    assert main(base_args(photos, set5, runs["full"])) == EXIT_USAGE
    assert "already holds a run" in capsys.readouterr().err


def test_warm_start(tmp_path: Path, runs: dict[str, Path], photos: Path, set5: Path, capsys) -> None:
    other = tmp_path / "mlrn_x4_paper.pth"
    torch.save(get_entry("MLRN-x4").build().state_dict(), other)  # 6 blocks, 58 channels
    assert main([*base_args(photos, set5, tmp_path / "a", iters=1), "--warm_start", str(other)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--warm_start" in err and "does not fit MLRN" in err and len(err.strip().splitlines()) == 1
    args = [*base_args(photos, set5, tmp_path / "b", iters=1), "--val_every", "0",
            "--warm_start", str(runs["full"] / "best_weights.pth")]
    assert main(args) == 0


@pytest.mark.parametrize("extra, message", [
    (["--patch_size", "48"], "cannot take 12x12 LR patches"),
    (["--val_dir", "/nonexistent/Set5"], "or --val_dir none"),
    (["--batch_size", "0"], "--batch_size must be a positive number"),
])
def test_bad_options_are_clear_errors(tmp_path: Path, photos: Path, set5: Path, capsys, extra, message) -> None:
    assert main([*base_args(photos, set5, tmp_path / "run"), *extra]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: "
                  "file write failed"), "the disk is full or refused the write"),  # torch's words for a full disk
])
def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch, capsys, error, reason) -> None:
    path = tmp_path / "last.pth"
    checkpointing.save_checkpoint(path, {"step": 1})

    def disk_full(obj, f):
        Path(f).write_bytes(b"partial")
        raise error

    monkeypatch.setattr(torch, "save", disk_full)
    assert checkpointing.try_save(path, {"step": 2}, "checkpoint") is False  # a warning: training goes on
    assert reason in capsys.readouterr().err
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


def test_default_validation_set_is_set5_of_the_shared_folder(set5: Path, monkeypatch) -> None:
    monkeypatch.delenv("ESRKIT_SHARED", raising=False)
    assert Path(TrainConfig().val_dir) == REPO_ROOT.parent / "shared" / "data" / "benchmarks" / "Set5"
    monkeypatch.setenv("ESRKIT_SHARED", str(set5.parent.parent.parent))
    assert Path(default_val_dir()) == set5 and Path(TrainConfig().val_dir).is_dir()


# -- the command line: outputs checked first, Ctrl-C, exit codes, progress -------------------------

def no_work(*args, **kwargs):
    raise AssertionError("the run started working before its outputs were checked")


@pytest.mark.parametrize("flag", ["--out_dir", "--cache_dir"])
def test_unwritable_output_under_a_file_stops_before_any_work(tmp_path: Path, photos: Path, set5: Path,
                                                             monkeypatch, capsys, flag) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    target = tmp_path / "a_file" / "run"
    monkeypatch.setattr(loop, "load_training_images", no_work)
    assert main([*base_args(photos, set5, tmp_path / "out"), flag, str(target)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} {target} is not writable") and f"choose another {flag}" in err
    assert len(err.strip().splitlines()) == 1  # before the announcement: nothing was started
    assert not (tmp_path / "out").exists()  # and nothing was left behind


def test_read_only_out_dir_stops_before_any_work(tmp_path: Path, photos: Path, set5: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "read_only"
    out.mkdir()
    out.chmod(0o555)
    try:
        (out / "probe").touch()
        pytest.skip("this user writes into read-only folders (root)")
    except PermissionError:
        pass
    monkeypatch.setattr(loop, "load_training_images", no_work)
    assert main(base_args(photos, set5, out)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out_dir {out} is not writable") and len(err.strip().splitlines()) == 1


def test_resume_without_iterations_left_is_an_error(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    checkpoint = runs["full"] / "last.pth"  # a finished run at iteration 40
    for extra, what in (([], f"that run is complete ({ITERS} of {ITERS} iterations)"),
                        (["--iters", str(ITERS)], f"--iters {ITERS} is not above its iteration {ITERS}"),
                        (["--iters", "10"], f"--iters 10 is not above its iteration {ITERS}")):
        code = main(["--resume", str(checkpoint), "--out_dir", str(tmp_path / "more"), *extra, "--no_progress"])
        err = capsys.readouterr().err
        assert code == EXIT_USAGE and err == f"error: --resume {checkpoint}: {what}; give --iters above {ITERS} " \
                                            f"to train further\n"
    assert not (tmp_path / "more").exists()


def interrupt_at(monkeypatch, step: int) -> None:
    """Ctrl-C as the trainer is about to take step ``step + 1`` (its state is that of ``step``)."""
    real = Trainer.train_step

    def train_step(self: Trainer) -> torch.Tensor:
        if self.step == step:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def main_interrupted(args: list[str]) -> int:
    """``main(args)``, where a Ctrl-C that escapes it is a failure of the test (not the end of pytest)."""
    try:
        return main(args)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped the command line (a traceback and no checkpoint)")


def last_line(err: str) -> str:
    assert "Traceback" not in err and err.count("interrupted:") == 1
    return err.strip().splitlines()[-1]


def test_ctrl_c_writes_a_checkpoint_that_resumes_exactly(runs: dict[str, Path], photos: Path, set5: Path,
                                                          tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 6)
    assert main_interrupted(base_args(photos, set5, out, iters=10)) == EXIT_INTERRUPTED
    line = last_line(capsys.readouterr().err)
    command = f"python -m esrkit.train --resume {out / 'last.pth'}"
    assert line == f"interrupted: at iteration 6 of 10: wrote {out / 'last.pth'}; continue with: {command}"
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "last.pth", "log.csv"]  # no temporary file
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 6
    monkeypatch.undo()
    assert main([*shlex.split(command)[3:], "--no_progress"]) == 0  # the printed command, as it is
    resumed, full = read_log(out), read_log(runs["full"])[:10]
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]  # the same steps as the unbroken run


@pytest.mark.parametrize("where", ["first_step", "loading_images"])
def test_ctrl_c_before_the_first_iteration_writes_nothing(tmp_path: Path, photos: Path, set5: Path,
                                                          monkeypatch, capsys, where) -> None:
    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "first_step":
        interrupt_at(monkeypatch, 0)
    else:
        monkeypatch.setattr(loop, "load_training_images", ctrl_c)
    assert main_interrupted(base_args(photos, set5, tmp_path / "run")) == EXIT_INTERRUPTED
    line = last_line(capsys.readouterr().err)
    assert line.startswith("interrupted: ") and line.endswith("nothing was written")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="SIGINT is handled by something else here")
@pytest.mark.parametrize("presses", [1, 2])
def test_real_ctrl_c_stops_between_steps_and_a_second_one_at_once(tmp_path: Path, photos: Path, set5: Path,
                                                                  monkeypatch, capsys, presses) -> None:
    """One SIGINT inside step 4 lets it finish (checkpoint at 4); two stop inside it (nothing saved now)."""
    real = Trainer.train_step

    def train_step(self: Trainer) -> torch.Tensor:
        if self.step == 3:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    out = tmp_path / "run"
    sigterm_before = signal.getsignal(signal.SIGTERM)
    assert main_interrupted([*base_args(photos, set5, out, iters=10), "--save_every", "2"]) == EXIT_INTERRUPTED
    line = last_line(capsys.readouterr().err)
    assert line.endswith(f"continue with: python -m esrkit.train --resume {out / 'last.pth'}")
    assert torch.load(out / "last.pth", weights_only=True)["step"] == (4 if presses == 1 else 2)
    if presses == 2:
        assert "stopped inside a training step (second Ctrl-C)" in line and "from before is unchanged" in line
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert signal.getsignal(signal.SIGTERM) == sigterm_before  # and SIGTERM's too


def train_process(args: list[str], code: str = "from esrkit.train import main") -> subprocess.Popen:
    """``python -m esrkit.train ARGS`` in a process of its own (``code`` may first patch the kit), stderr piped."""
    script = f"import sys\n{code}\nsys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_sigterm_stops_at_an_iteration_boundary_with_a_resumable_checkpoint(tmp_path: Path, photos: Path) -> None:
    """A scheduler's time limit (Slurm: SIGTERM, SIGKILL after KillWait): a real SIGTERM to a real training
    process, once its first iteration is done (its first progress line), ends it as Ctrl-C does."""
    out = tmp_path / "run"
    args = [a for a in base_args(photos, Path("none"), out, iters=100_000) if a != "--no_progress"]
    proc = train_process([*args, "--save_every", "100000"])
    seen = []
    for line in proc.stderr:  # a pipe: plain progress lines, the first at once
        seen.append(line)
        if line.startswith("train 1/"):
            break
    else:
        pytest.fail(f"the training process ended before its first iteration: {''.join(seen)[-3000:]}")
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, rest
    assert "Traceback" not in rest and rest.count("interrupted") == 1
    line = rest.strip().splitlines()[-1]
    step = torch.load(out / "last.pth", weights_only=True)["step"]
    assert step >= 1 and line == (f"interrupted by SIGTERM: at iteration {step} of 100000: wrote {out / 'last.pth'}; "
                                  f"continue with: python -m esrkit.train --resume {out / 'last.pth'}")
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "last.pth", "log.csv"]  # no temporary file
    assert [int(r["step"]) for r in read_log(out)] == list(range(1, step + 1))


def test_sigterm_before_the_first_iteration_leaves_nothing(tmp_path: Path, photos: Path) -> None:
    """SIGTERM while the images load: one line, exit 130, and the --out_dir it made is gone."""
    out = tmp_path / "run"
    sigterm_while_loading = ("import os, signal\nfrom esrkit.training import loop\nfrom esrkit.train import main\n"
                             "loop.load_training_images = lambda *a, **k: os.kill(os.getpid(), signal.SIGTERM)")
    proc = train_process(base_args(photos, Path("none"), out), sigterm_while_loading)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.strip().splitlines()[-1] == "interrupted by SIGTERM: stopped before the first iteration; nothing was " \
                                           "written"
    assert "Traceback" not in err and not out.exists()


def test_an_io_error_is_one_line_and_exit_2(tmp_path: Path, photos: Path, set5: Path, monkeypatch, capsys) -> None:
    def unreadable(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/data/train/0001.png")

    monkeypatch.setattr(loop, "load_training_images", unreadable)
    assert main(base_args(photos, set5, tmp_path / "run")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: cannot access /data/train/0001.png: Permission denied")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_only_on_a_terminal_and_never_with_quiet(tmp_path: Path, photos: Path, monkeypatch,
                                                               capsys) -> None:
    def stderr_of(name: str, *extra: str, terminal: bool) -> str:
        stream = Terminal() if terminal else sys.stderr
        monkeypatch.setattr(sys, "stderr", stream)
        args = [a for a in base_args(photos, Path("none"), tmp_path / name, iters=2) if a != "--no_progress"]
        assert main([*args, *extra]) == 0
        monkeypatch.undo()
        return stream.getvalue() if terminal else capsys.readouterr().err

    def assert_no_bars(text: str) -> None:
        assert "training MLRN-entire" in text and "train:" not in text and "loading training" not in text

    shown = stderr_of("terminal", terminal=True)
    assert "loading training images" in shown and "train:" in shown
    logged = stderr_of("log", terminal=False)  # a log file or a pipe: no bars, but plain lines, never silent
    assert "\r" not in logged and "train:" not in logged and "training MLRN-entire" in logged
    assert "train 2/2" in logged and "loading training images" in logged
    assert_no_bars(stderr_of("quiet", "--quiet", terminal=True))
    assert_no_bars(stderr_of("no_progress", "--no_progress", terminal=True))


def test_train_throughput_benchmark(photos: Path, capsys) -> None:
    args = ["--device", "cpu", "--batch_size", "2", "--patch_size", "64", "--steps", "2", "--warmup", "1",
            "--workers", "1"]
    assert train_throughput.main(["--train_dir", str(photos), *args]) == 0
    assert "patches/s" in capsys.readouterr().out
    assert train_throughput.main(["--train_dir", str(photos / "missing"), *args]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: training folder") and len(err.strip().splitlines()) == 1


# -- two processes ---------------------------------------------------------------------------------

def test_two_process_gloo_run(ddp_run, runs: dict[str, Path]) -> None:
    proc, out, stderr = ddp_run
    code = proc.wait(timeout=180)
    stderr.seek(0)
    err = stderr.read()
    assert code == 0, err[-3000:]
    assert err.count("training MLRN-entire") == 1 and "x2 process(es)" in err  # rank 0 reports
    rows = read_log(out)
    assert len(rows) == ITERS and rows[-1]["val_psnr"]
    ddp = [float(r["loss"]) for r in rows]
    single = [float(r["loss"]) for r in read_log(runs["full"])]
    for curve in (ddp, single):  # both fall the same way (4 samples per rank here, 4 in one process there)
        assert np.mean(curve[-10:]) < 0.75 * np.mean(curve[:10])
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["world_size"] == 2 and len(state["sampler_states"]) == 2
    assert not torch.equal(state["sampler_states"][0], state["sampler_states"][1])  # one crop stream per rank


@pytest.mark.parametrize("flag, value, expected", [
    ("--lr", "nan", "--lr must be a positive number, got nan"),
    ("--lr", "inf", "--lr must be a positive number, got inf"),
    ("--beta1", "1.5", "--beta1 1.5: Adam's betas are in [0, 1)"),
    ("--beta2", "-0.1", "--beta2 -0.1: Adam's betas are in [0, 1)"),
    ("--eps", "0", "--eps must be a positive number, got 0"),
])
def test_optimiser_arguments_are_checked_before_any_work(tmp_path: Path, photos: Path, capsys, flag, value,
                                                         expected) -> None:
    assert main([*base_args(photos, Path("none"), tmp_path / "run", iters=2), flag, value]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {expected}"] or (len(err) == 1 and expected in err[0]), err
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path: Path, photos: Path,
                                                                                capsys, monkeypatch) -> None:
    real = Trainer.train_step

    def diverging(self):  # noqa: ANN001 - from iteration 7 on, the weights and the loss are NaN
        loss = real(self)
        if self.step >= 7:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(float("nan"))
            return torch.full_like(loss, float("nan"))
        return loss

    monkeypatch.setattr(Trainer, "train_step", diverging)
    out = tmp_path / "run"
    assert main([*base_args(photos, Path("none"), out, iters=10), "--save_every", "5"]) == EXIT_USAGE
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: training diverged: the L1 loss became nan between iterations 7 and 7")
    assert f"{out / 'last.pth'} (iteration 5) is the last good checkpoint" in line
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["step"] == 5 and all(torch.isfinite(v).all() for v in state["params"].values())


def test_a_full_disk_names_the_disk_not_torchs_internals(tmp_path: Path, photos: Path, capsys, monkeypatch) -> None:
    def full_disk(obj, f, *args, **kwargs):  # noqa: ANN001 - what torch.save raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(checkpointing.torch, "save", full_disk)
    out = tmp_path / "run"
    assert main(base_args(photos, Path("none"), out, iters=2)) == EXIT_USAGE
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the disk is full or refused the write" in line and "enforce fail" not in line
    assert "--resume" not in line and "no earlier checkpoint of this run exists" in line  # none was ever written
