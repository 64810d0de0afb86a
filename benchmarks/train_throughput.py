"""End-to-end training throughput (patches/s: on-device cropping + forward + backward + Adam).

    python -m benchmarks.train_throughput                 # device-sized defaults
    python -m benchmarks.train_throughput --bf16 --channels_last --steps 300
    python -m benchmarks.train_throughput --device cpu --threads 1     # batch 4, 64 px, 20 steps on a CPU

It builds the real :class:`esrkit.training.loop.Trainer` (same data pipeline, model, optimizer and
step as ``python -m esrkit.train``), runs ``--warmup`` untimed steps, then times ``--steps`` steps
between two device synchronisations. It also times the data pipeline alone (sampling, cropping,
augmenting, converting to float) to show how much headroom it leaves the step. Training images:
``--train_dir`` (default: the shared training photos), or ``--synthetic N`` random 512x512 images.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from esrkit.cli import run_guarded
from esrkit.device import device_name
from esrkit.imageio import write_png
from esrkit.measure.timing import wall_seconds
from esrkit.paths import shared_path
from esrkit.training.data import to_model_input
from esrkit.training.loop import Trainer, TrainConfig

DEFAULT_TRAIN_DIR = shared_path("data", "train")
# (batch, patch, timed steps, warm-up steps) when not given: the paper's recipe on a GPU, tiny on a CPU.
GPU_DEFAULTS = (64, 256, 300, 30)
CPU_DEFAULTS = (4, 64, 20, 3)


def synthetic_images(folder: Path, count: int, size: int = 512) -> Path:
    """``count`` random RGB PNGs of ``size`` x ``size`` (content does not change the throughput)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        write_png(folder / f"synthetic_{i:03d}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return folder


def main(argv: list[str] | None = None) -> int:
    return run_guarded(lambda: measure(argv), "nothing was written")


def measure(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_id", default="MLRN-entire")
    p.add_argument("--train_dir", nargs="+", default=None, help=f"default: {DEFAULT_TRAIN_DIR}")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="use N random 512x512 images instead")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch_size", type=int, default=None)
    p.add_argument("--patch_size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    gpu = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    batch, patch, steps, warmup = (
        given if given is not None else default
        for given, default in zip((args.batch_size, args.patch_size, args.steps, args.warmup),
                                  GPU_DEFAULTS if gpu else CPU_DEFAULTS)
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            train_dirs = [str(synthetic_images(Path(tmp) / "images", args.synthetic))]
        else:
            train_dirs = args.train_dir or [str(DEFAULT_TRAIN_DIR)]
        cfg = TrainConfig(model_id=args.model_id, train_dir=train_dirs, val_dir=None, out_dir=str(Path(tmp) / "run"),
                          iters=10**9, batch_size=batch, patch_size=patch, device=args.device, bf16=args.bf16,
                          channels_last=args.channels_last, compile=args.compile, workers=args.workers, progress=False)
        trainer = Trainer(cfg)
        device = trainer.device

        def data_only() -> None:
            lr, hr = trainer.sampler.sample(batch)
            to_model_input(lr, trainer.entry.data_range, args.channels_last)
            to_model_input(hr, trainer.entry.data_range, args.channels_last)

        wall_seconds(trainer.train_step, device, warmup)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        step_s = wall_seconds(trainer.train_step, device, steps)
        wall_seconds(data_only, device, warmup)
        data_s = wall_seconds(data_only, device, steps)

    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(f"device: {device_name(device)} (torch {torch.__version__})")
    print(f"entry: {trainer.entry.name}; batch {batch}; HR patch {patch} (LR {patch // trainer.entry.scale}); "
          f"{precision}; channels_last {args.channels_last}; compile {args.compile}; {trainer.data_summary}")
    print(f"end to end (data + step): {steps * batch / step_s:,.0f} patches/s, {1000 * step_s / steps:.2f} ms/step "
          f"over {steps} steps after {warmup} warm-up")
    print(f"data pipeline alone:      {steps * batch / data_s:,.0f} patches/s, {1000 * data_s / steps:.2f} ms/batch")
    if device.type == "cuda":
        print(f"peak GPU memory during the timed steps: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
