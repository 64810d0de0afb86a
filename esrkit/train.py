"""Train an entry: ``python -m esrkit.train --train_dir DIR [DIR ...] [options]``.

The defaults are the paper's recipe (Sec. 4.2 / 4.6): L1 loss, Adam (0.9, 0.99, 1e-8), lr 5e-4
halved every ``--lr_step`` iterations (default: a fifth of ``--iters``, i.e. every 200 of 1000
epochs), batch 64, 256 px HR patches, random flips and 90/180/270 rotations, LR made by the kit's
MATLAB-bicubic ``imresize`` from the whole image. Multi-GPU::

    torchrun --nproc_per_node 8 -m esrkit.train --train_dir DIV2K_train_HR LSDIR_train_HR --bf16

Outputs in ``--out_dir``: ``last.pth`` and ``best.pth`` (full training state, resumable and
loadable as weights), ``best_weights.pth`` (plain state_dict of the best validated weights),
``log.csv`` and ``curves.png``. See :mod:`esrkit.training` for the pieces.

Every output is checked before any work. Ctrl-C stops a run resumably: ``last.pth`` is written and
one line gives the ``--resume`` command. SIGTERM (a scheduler's time limit, ``scancel``, ``kill``) does the
same, its line saying ``interrupted by SIGTERM``. Exit codes (:mod:`esrkit.cli`): 0 done, 2 a usage or I/O
error (one ``error:`` line), 130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Sequence

from esrkit.cli import EXIT_INTERRUPTED, EXIT_OK, run_guarded, sigterm_as_interrupt, startup

with startup("stopped before the first iteration; nothing was written"):
    import torch.distributed as dist

    from esrkit.errors import KitError
    from esrkit.registry import get_entry
    from esrkit.training.checkpointing import load_training_checkpoint
    from esrkit.training.loop import SCHEDULES, RunSummary, TrainConfig, Trainer, merge_resume_config


def build_parser(with_defaults: bool = True) -> argparse.ArgumentParser:
    """The CLI. ``with_defaults=False`` leaves out every option not given (to tell which were)."""
    p = argparse.ArgumentParser(
        prog="python -m esrkit.train",
        description="Train a registered entry (MLRN-entire by default) with the paper's recipe.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    data = p.add_argument_group("data")
    data.add_argument("--train_dir", nargs="+", metavar="DIR",
                      help="folders of HR training images, searched recursively (DIV2K_train_HR, LSDIR, ...)")
    data.add_argument("--val_dir", help="validation set (benchmark HR/+LR_bicubic/X4, official layout, or a "
                      "folder of HR images); 'none' to skip validation; default: Set5 of the shared folder "
                      "($ESRKIT_SHARED or ../shared)")
    data.add_argument("--cache_dir", help="keep the MATLAB-bicubic LR images here between runs")
    data.add_argument("--workers", type=int, help="threads decoding images and making LR")
    data.add_argument("--data_device", choices=("auto", "train", "cpu"),
                      help="where the decoded images live; auto: the training device if they fit")
    model = p.add_argument_group("model")
    model.add_argument("--model_id", help="registered entry (name or id)")
    model.add_argument("--scale", type=int, help="must match the entry's scale (None: the entry's)")
    model.add_argument("--warm_start", metavar="PATH", help="initial weights (strict; weights only)")
    model.add_argument("--resume", metavar="CKPT", help="continue a run exactly from its last.pth/best.pth")
    optim = p.add_argument_group("optimisation")
    optim.add_argument("--iters", type=int, help="training iterations (optimizer steps)")
    optim.add_argument("--batch_size", type=int, help="global batch (split over the processes)")
    optim.add_argument("--patch_size", type=int, help="HR patch size (the LR patch is patch/scale)")
    optim.add_argument("--lr", type=float, help="initial learning rate")
    optim.add_argument("--schedule", choices=SCHEDULES, help="step: x lr_gamma every lr_step; cosine: to lr_min")
    optim.add_argument("--lr_step", type=int, help="iterations between lr decays (None: iters // 5)")
    optim.add_argument("--lr_gamma", type=float, help="lr factor at each step decay")
    optim.add_argument("--lr_min", type=float, help="final lr of the cosine schedule")
    optim.add_argument("--beta1", type=float, help="Adam beta1")
    optim.add_argument("--beta2", type=float, help="Adam beta2")
    optim.add_argument("--eps", type=float, help="Adam epsilon")
    optim.add_argument("--ema", type=float, metavar="DECAY", help="EMA of the weights (e.g. 0.999); 0: off")
    optim.add_argument("--seed", type=int, help="seed of the initial weights and of the patch stream")
    run = p.add_argument_group("run")
    run.add_argument("--out_dir", help="checkpoints, log.csv, curves.png (None: runs/ENTRY)")
    run.add_argument("--val_every", type=int, help="iterations between validations (0: none)")
    run.add_argument("--save_every", type=int, help="iterations between checkpoints")
    run.add_argument("--log_every", type=int, help="iterations between log rows")
    run.add_argument("--device", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    run.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass")
    run.add_argument("--channels_last", action="store_true", help="channels_last memory format")
    run.add_argument("--compile", action="store_true", help="torch.compile the training forward/backward")
    run.add_argument("--no_progress", "--quiet", dest="progress", action="store_false",
                     help="no progress bars (they are only shown when stderr is a terminal)")
    if with_defaults:
        p.set_defaults(**asdict(TrainConfig()), scale=None, resume=None)
    return p


def config_from_args(argv: Sequence[str] | None) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's config (out_dir and lr_step filled in) and, with ``--resume``, the checkpoint to continue from."""
    args = vars(build_parser().parse_args(argv))
    given = vars(build_parser(with_defaults=False).parse_args(argv))
    names = {f.name for f in fields(TrainConfig)}
    resume_state = None
    if args["resume"]:
        resume_state = load_training_checkpoint(args["resume"])
        given.setdefault("out_dir", str(Path(args["resume"]).parent))
        cfg = merge_resume_config(resume_state.get("config", {}), {k: v for k, v in given.items() if k in names})
        check_left_to_train(cfg, int(resume_state.get("step", 0)), args["resume"], "iters" in given)
    else:
        cfg = TrainConfig(**{k: v for k, v in args.items() if k in names})
    entry = get_entry(cfg.model_id)
    if args["scale"] is not None and args["scale"] != entry.scale:
        raise KitError(f"--scale {args['scale']}: entry {entry.name} is x{entry.scale}; choose an entry of that scale")
    return cfg.resolved(entry), resume_state


def check_left_to_train(cfg: TrainConfig, step: int, checkpoint: str, iters_given: bool) -> None:
    """A resumed run must have iterations left: ``--iters`` above the checkpoint's step."""
    if cfg.iters > step:
        return
    what = (f"--iters {cfg.iters} is not above its iteration {step}" if iters_given
            else f"that run is complete ({step} of {cfg.iters} iterations)")
    fix = (f"a cosine schedule cannot be extended: start a new run from its weights with --warm_start {checkpoint}"
           if cfg.schedule == "cosine" else f"give --iters above {step} to train further")
    raise KitError(f"--resume {checkpoint}: {what}; {fix}")


def resume_command(checkpoint: Path, world_size: int) -> str:
    """The command line that continues a run from ``checkpoint``."""
    launcher = f"torchrun --nproc_per_node {world_size}" if world_size > 1 else "python"
    return f"{launcher} -m esrkit.train --resume {shlex.quote(str(checkpoint))}"


def report(summary: RunSummary, iters: int, world_size: int = 1) -> str:
    """The closing lines of a run (one line when it was interrupted)."""
    if summary.interrupted:
        text = f"{summary.stopped_by}: at iteration {summary.step} of {iters}: {summary.note}"
        if summary.checkpoint is not None:
            text += f"; continue with: {resume_command(summary.checkpoint, world_size)}"
        return text
    text = f"done: {summary.step} iterations, last loss {summary.last_loss:.4g}; outputs in {summary.out_dir}"
    if summary.best_step:
        text += (f"\nbest validation PSNR {summary.best_psnr:.3f} dB at iteration {summary.best_step}: "
                 f"{summary.out_dir / 'best_weights.pth'} (plain state_dict)")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit codes and one-line errors as every command of the kit (:mod:`esrkit.cli`)."""
    try:
        with sigterm_as_interrupt():
            return run_guarded(lambda: train(argv), "stopped before the first iteration; nothing was written")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train(argv: Sequence[str] | None) -> int:
    cfg, resume_state = config_from_args(argv)
    out_dir = Path(cfg.out_dir)
    made_here = not out_dir.exists() and int(os.environ.get("RANK", "0")) == 0
    try:
        trainer = Trainer(cfg, resume_state)
        summary = trainer.run()
    finally:
        if made_here:  # a run that stopped before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only if empty
    if trainer.ctx.is_main:
        print(report(summary, cfg.iters, trainer.ctx.world_size), file=sys.stderr)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
