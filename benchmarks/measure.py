"""The measuring half of the efficiency report: complexity under each counter, runtime and memory.

Two runtime protocols, always side by side:
- ``challenge``: as test_demo.py / the official kit (no warm-up, one forward per input, mean; on
  fixed-size inputs that is ``repeats`` back-to-back forwards of a fresh model, the first one cold);
- ``robust``: torch.utils.benchmark's ``Timer.blocked_autorange`` after a warm-up (median and IQR
  of blocks, CUDA synchronised by the library), with the peak memory reset per entry and per input.
Memory is measured per entry in isolation: the previous entry is freed and the peak reset first.
All timing goes through :mod:`esrkit.measure.timing`, all counting through :mod:`esrkit.measure.complexity`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from esrkit.datasets import Split
from esrkit.device import free_device, peak_mib, prepare_model, reset_peak
from esrkit.entry import Entry
from esrkit.errors import KitError
from esrkit.evaluation import Evaluator, SplitRecord
from esrkit.api import time_forward
from esrkit.measure import timing
from esrkit.measure.probe import random_lr

FIXED_SIZES: dict[str, tuple[int, int]] = {"256x256": (256, 256), "339x510": (339, 510)}  # LR H x W; 339x510 ~ DIV2K

@dataclass
class Timing:
    """Runtime [ms] and peak allocated memory [MiB] of one entry on one input or split."""

    input: str
    challenge_ms: float  # mean, no warm-up (the challenge figure)
    cold_ms: float  # the first forward alone
    robust_median_ms: float
    robust_iqr_ms: float
    peak_mib: float | None  # reset before this input; None off CUDA
    challenge_mem_mib: float | None = None  # the official never-reset figure (valid split only)
    psnr: float | None = None  # only with trained weights on a validation split
    per_image_ms: list[float] = field(default_factory=list)
    record: SplitRecord | None = None  # the split's per-image record (with --data_dir)


def fresh_model(entry: Entry, weights: Path | None, device: torch.device,
                untrained: bool = False, flag: str = "--weights") -> tuple[nn.Module, bool]:
    """A newly built (cold) model on ``device`` and whether it is trained.

    Missing weights are an error (the one that says where they were expected), never a silently untrained
    count: a misspelt path with wrong constructor arguments would otherwise count another network. Only a
    registered entry of the kit, and only with ``untrained`` (``--untrained``), is counted and timed without
    weights -- said in every table it appears in. ``flag`` names the option that gives its weights."""
    if weights is None and not entry.has_default_weights() and untrained and entry.source is None:
        return prepare_model(entry.build(), device), False
    return prepare_model(entry.load(weights, flag=flag).model, device), True


def check_loadable(entries: Sequence[tuple[Entry, Path | None]], untrained: bool = False,
                   flags: dict[str, str] | None = None) -> None:
    """Every entry builds and its weights load, as :func:`fresh_model` will do it -- before anything is measured, so
    that a missing or mismatched weights file of the last entry (the baseline's) stops the run at once, not after
    the others were measured. The models are built on the CPU and dropped; the global RNG is left as it was (an
    untrained entry's weights are drawn from it when it is measured)."""
    cpu = torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        for entry, weights in entries:
            with entry.running_on(cpu):
                model, _ = fresh_model(entry, weights, cpu, untrained, (flags or {}).get(entry.display_name, "--weights"))
            del model


def weights_per_entry(model_ids: Sequence[str], weights: Sequence[str | Path] | None) -> list[Path | None]:
    """One weights file per ``--model_id`` (None, or ``-``, for the entry's own ``model_zoo`` file)."""
    if weights is None:
        return [None] * len(model_ids)
    if len(weights) != len(model_ids):
        raise KitError(f"--weights has {len(weights)} file(s) for {len(model_ids)} --model_id entr(y/ies): "
                       f"give one per entry, '-' for the entry's default")
    return [None if str(w) == "-" else Path(w) for w in weights]


def time_fixed_input(model: nn.Module, entry: Entry, size: tuple[int, int], device: torch.device, repeats: int,
                     min_run_time: float = 1.0) -> Timing:
    """Both protocols on a random LR input; ``model`` must be prepared on ``device`` and still cold."""
    free_device(device)
    reset_peak(device)
    summary = time_forward(model, size, runs=max(repeats, 1), data_range=entry.data_range or 1.0, device=device)
    x = random_lr(*size, entry.data_range or 1.0, device)  # the same input, warm now
    robust = timing.robust(lambda: model(x), min_run_time)
    return Timing(f"{size[0]}x{size[1]}", summary.mean, summary.first, robust.median, robust.iqr, peak_mib(device),
                  per_image_ms=list(summary.samples))


def time_split(model: nn.Module, entry: Entry, split: Split, device: torch.device, repeats: int,
               trained: bool) -> Timing:
    """The challenge protocol over a split (as test_demo.py), then warm per-image medians beside it."""
    free_device(device)
    reset_peak(device)
    evaluator = Evaluator(model, scale=entry.scale, data_range=entry.data_range or 1.0, device=device, tile=entry.tile,
                          tile_overlap=entry.tile_overlap, warm_runs=max(repeats, 1), source=entry.name)
    r = evaluator.run(split)
    warm = timing.Summary.of(r.warm_runtime_ms or r.runtime_ms)
    challenge = timing.Summary.of(r.runtime_ms)
    return Timing(f"{split.root.name}/{split.name} ({len(split)} images)", challenge.mean, challenge.first,
                  warm.median, warm.iqr, r.split_peak_mib, r.memory_mib,
                  r.mean("psnr") if trained and r.has_metrics else None, r.runtime_ms, r)
