"""The measuring half of the efficiency report: complexity under each counter, runtime and memory.

Two runtime protocols, always side by side:
- ``challenge``: as test_demo.py / the official kit (no warm-up, one forward per input, mean; on
  fixed-size inputs that is ``repeats`` back-to-back forwards of a fresh model, the first one cold);
- ``robust``: torch.utils.benchmark's ``Timer.blocked_autorange`` after a warm-up (median and IQR
  of blocks, CUDA synchronised by the library), with the peak memory reset per entry and per input.
Memory is measured per entry in isolation: the previous entry is freed and the peak reset first.
"""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.utils.benchmark as tbench
from torch import nn

from esrkit.complexity import fvcore_counts, official_counts, ptflops_counts
from esrkit.errors import KitError
from esrkit.registry import Entry
from esrkit.runner import SplitRunner, Stopwatch, prepare_model
from esrkit.datasets import Split

FIXED_SIZES: dict[str, tuple[int, int]] = {"256x256": (256, 256), "339x510": (339, 510)}  # LR H x W; 339x510 ~ DIV2K


@dataclass(frozen=True)
class Complexity:
    """Every count on a 3x256x256 LR input; FLOPs are MACs under each tool's own rules."""

    params: int
    flops_official: int  # the kits' hook counter (2022-2023; Table 3)
    flops_fvcore: int  # fvcore FlopCountAnalysis (2024-2025)
    flops_ptflops: int  # ptflops, pytorch backend (bias and activations included)
    activations: int
    num_conv: int
    fvcore_unsupported: dict[str, int]


def measure_complexity(model: nn.Module) -> Complexity:
    """All counters, each on its own fresh copy of ``model`` (their hooks interfere otherwise)."""
    official = official_counts(model)
    fv = fvcore_counts(model)
    pt = ptflops_counts(model)
    return Complexity(official.params, official.flops, fv.macs, pt.macs, official.activations, official.num_conv,
                      fv.unsupported_ops)


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


def load_entry(entry: Entry, weights: Path | None) -> tuple[nn.Module, bool]:
    """The entry's model and whether it is trained; without any weights file it is still counted and timed."""
    if weights is None and not entry.has_default_weights():
        return entry.build(), False
    return entry.load(weights)[0], True


def weights_per_entry(model_ids: Sequence[str], weights: Sequence[str | Path] | None) -> list[Path | None]:
    """One weights file per ``--model_id`` (None, or ``-``, for the entry's own ``model_zoo`` file)."""
    if weights is None:
        return [None] * len(model_ids)
    if len(weights) != len(model_ids):
        raise KitError(f"--weights has {len(weights)} file(s) for {len(model_ids)} --model_id entr(y/ies): "
                       f"give one per entry, '-' for the entry's default")
    return [None if str(w) == "-" else Path(w) for w in weights]


def free_device(device: torch.device) -> None:
    """Drop what the previous model left: garbage, and the CUDA caching allocator's free blocks."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _free(device: torch.device) -> None:
    free_device(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1024**2 if device.type == "cuda" else None


def time_fixed_input(model: nn.Module, size: tuple[int, int], device: torch.device, repeats: int,
                     min_run_time: float = 1.0) -> Timing:
    """Both protocols on a random 1x3xHxW input; ``model`` must be prepared on ``device`` and still cold."""
    _free(device)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    watch = Stopwatch(device)
    challenge = [watch.time(lambda: model(x))[1] for _ in range(max(repeats, 1))]
    timer = tbench.Timer("model(x)", globals={"model": model, "x": x})
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(f"{size[0]}x{size[1]}", statistics.fmean(challenge), challenge[0], m.median * 1e3, m.iqr * 1e3,
                  _peak(device), per_image_ms=challenge)


def time_split(model: nn.Module, entry: Entry, split: Split, device: torch.device, repeats: int,
               trained: bool) -> Timing:
    """The challenge protocol over a split (as test_demo.py), then warm per-image medians beside it."""
    _free(device)
    runner = SplitRunner(model, scale=entry.scale, data_range=entry.data_range, device=device, tile=entry.tile,
                         tile_overlap=entry.tile_overlap, warm_runs=max(repeats, 1))
    r = runner.run(split)
    warm = r.warm_runtime_ms or []
    q = statistics.quantiles(warm, n=4) if len(warm) > 1 else [warm[0]] * 3
    return Timing(f"{split.root.name}/{split.name} ({len(split)} images)", statistics.fmean(r.runtime_ms), r.runtime_ms[0],
                  statistics.median(warm), q[2] - q[0], r.split_peak_mib, r.memory_mib,
                  statistics.fmean(r.psnr) if trained else None, r.runtime_ms)


def fresh_model(entry: Entry, weights: Path | None, device: torch.device) -> tuple[nn.Module, bool]:
    """A newly built (cold) model on ``device``; the previous one should have been dropped."""
    model, trained = load_entry(entry, weights)
    return prepare_model(model, device), trained
