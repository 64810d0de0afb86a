"""Running an entry over a split the way the challenge measures it.

The challenge protocol (``OFFICIAL_KITS.md`` section 1), kept exactly:
fp32, ``cudnn.benchmark = False``, batch 1, the whole image, the input copied to the device
*before* the timer starts, one pair of CUDA events around the forward pass only, no warm-up,
no repeats, the SR quantised to uint8 before the metrics, and ``max_memory_allocated`` read after
the split (never reset, so it includes the weights and every earlier split).

Beside those figures, never instead of them, it also records: the first (cold) forward, a warm
per-image time (one warm-up + ``warm_runs`` timed repeats after the challenge pass, median),
Y-channel PSNR/SSIM, and the peak memory of the split alone.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from esrkit import metrics
from esrkit.datasets import Split
from esrkit.errors import KitError
from esrkit.imageio import write_png

OOM_FALLBACK_TILE = 256
CHALLENGE_ENGINE = "fp32 eager (challenge protocol)"
Progress = Callable[[str], None]
Forward = Callable[[torch.Tensor], torch.Tensor]
Timer = Callable[[Callable[[], torch.Tensor]], tuple[torch.Tensor, float]]


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise KitError(f"unknown device {requested!r}: use auto, cuda, cuda:N, mps or cpu") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise KitError(f"--device {requested} was asked for but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise KitError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise KitError(f"--device {requested} was asked for but MPS is not available here; use --device cpu or auto")
    elif device.type != "cpu":
        raise KitError(f"unsupported device {requested!r}: use auto, cuda, cuda:N, mps or cpu")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu} ({torch.get_num_threads()} threads)"


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """As the kits do: eval mode, no parameter requires grad, moved to the device."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


class Stopwatch:
    """Times one call in milliseconds: CUDA events on a GPU, the wall clock elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def time(self, fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        if self.device.type == "cuda":
            self._start.record()
            out = fn()
            self._end.record()
            torch.cuda.synchronize()
            return out, self._start.elapsed_time(self._end)
        self._sync()
        t0 = time.perf_counter()
        out = fn()
        self._sync()
        return out, (time.perf_counter() - t0) * 1e3

    def _sync(self) -> None:
        if self.device.type == "mps":
            torch.mps.synchronize()


def forward_tiled(model: Forward, x: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """Run ``model`` on overlapping tiles of ``x`` and average the overlaps in the output."""
    _, c, h, w = x.shape
    tile = min(tile, h, w)
    stride = max(tile - overlap, 1)
    rows = sorted({*range(0, h - tile, stride), h - tile})
    cols = sorted({*range(0, w - tile, stride), w - tile})
    out = x.new_zeros(1, c, h * scale, w * scale)
    weight = x.new_zeros(1, 1, h * scale, w * scale)
    for i in rows:
        for j in cols:
            patch = model(x[:, :, i : i + tile, j : j + tile])
            out[:, :, i * scale : (i + tile) * scale, j * scale : (j + tile) * scale] += patch
            weight[:, :, i * scale : (i + tile) * scale, j * scale : (j + tile) * scale] += 1
    return out / weight


def check_sr_shape(name: str, sr: tuple[int, ...], lr: tuple[int, ...], hr: tuple[int, ...] | None, scale: int) -> None:
    """Stop with a clear message when the SR image (HxWxC) is not the HR's size (LR x scale when there is no HR)."""
    hr = tuple(hr) if hr is not None else (lr[0] * scale, lr[1] * scale, *lr[2:])
    if tuple(sr) != hr:
        raise KitError(
            f"{name}: the model returned {sr[1]}x{sr[0]} for a {lr[1]}x{lr[0]} "
            f"input; x{scale} needs {hr[1]}x{hr[0]} (wrong scale for this entry?)"
        )


SMALL_LR = 64  # LR side below which a failing forward is most likely a too-small image


def forward_failed(name: str, x: torch.Tensor, exc: RuntimeError) -> KitError:
    """One line for a forward pass that raised: which image, its LR size, torch's first line and a hint."""
    h, w = x.shape[-2:]
    first = (str(exc).strip().splitlines() or ["(no message)"])[0]
    hint = ("the image may be smaller than the network supports (ESA's stride-2 conv and 7x7 pooling need about "
            "15x15 LR pixels): remove or enlarge it" if min(h, w) < SMALL_LR else
            "check that the entry, its weights and --device fit together")
    return KitError(f"the model failed on {name} (LR {w}x{h}): {first} -- {hint}")


@dataclass
class SplitResult:
    """Everything measured on one split; per-image lists follow ``names``."""

    split: str
    names: list[str]
    runtime_ms: list[float]
    psnr: list[float]  # empty (as psnr_y, ssim, ssim_y) on an LR-only split
    psnr_y: list[float]
    memory_mib: float | None  # the challenge figure: GPU peak so far in the process (never reset); None off CUDA
    split_peak_mib: float | None  # beside it: the peak of this split alone
    ssim: list[float] | None = None
    ssim_y: list[float] | None = None
    warm_runtime_ms: list[float] | None = None
    tiled: list[str] = field(default_factory=list)  # images that ran tiled (entry/--tile, or OOM fallback)
    oom_fallback: list[str] = field(default_factory=list)
    engine: str = CHALLENGE_ENGINE  # precision and engine that produced the SR images and the runtimes

    @property
    def has_metrics(self) -> bool:
        """False on an LR-only split: runtimes and SR images, no PSNR/SSIM."""
        return bool(self.psnr)


def latest_psnr_text(result: SplitResult) -> str:
    """The latest image's PSNR for the progress line ("no HR" on an LR-only split)."""
    return f"{result.psnr[-1]:.2f} dB" if len(result.psnr) == len(result.names) else "no HR"


class SplitRunner:
    """Runs one prepared model over splits with the challenge protocol (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        scale: int,
        data_range: float,
        device: torch.device,
        tile: int | None = None,
        tile_overlap: int = 32,
        ssim: bool = False,
        warm_runs: int = 0,
        save_dir: Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.model = model
        self.scale = scale
        self.data_range = data_range
        self.device = device
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.ssim = ssim
        self.warm_runs = warm_runs
        self.save_dir = save_dir
        self.progress = progress or (lambda msg: None)
        self.stopwatch = Stopwatch(device)
        self._memory_so_far = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tile is None:
            return self.model(x)
        return forward_tiled(self.model, x, self.scale, self.tile, self.tile_overlap)

    def _timed_forward(
        self, x: torch.Tensor, name: str, result: SplitResult, timer: Timer | None = None
    ) -> tuple[torch.Tensor, float]:
        """``timer`` (default: the stopwatch) times ``self.forward(x)``; out of GPU memory, retry tiled."""
        time_it = timer or self.stopwatch.time
        try:
            return time_it(lambda: self.forward(x))
        except torch.OutOfMemoryError:
            return self._retry_tiled(x, name, result, time_it)
        except RuntimeError as exc:  # e.g. an LR image smaller than the network's pooling windows
            raise forward_failed(name, x, exc) from None

    def _retry_tiled(
        self, x: torch.Tensor, name: str, result: SplitResult, time_it: Timer
    ) -> tuple[torch.Tensor, float]:
        """After running out of GPU memory on ``name``: tiles from now on (an error if already tiled small)."""
        if self.tile is not None and self.tile <= OOM_FALLBACK_TILE:
            raise KitError(
                f"out of GPU memory on {name} even with {self.tile}-px tiles: use a smaller --tile or --device cpu"
            )
        torch.cuda.empty_cache()
        self.tile = OOM_FALLBACK_TILE
        print(
            f"warning: out of GPU memory on {name} ({tuple(x.shape[-2:])}); falling back to tiled inference "
            f"(tile {self.tile}, overlap {self.tile_overlap}) for this and the following images",
            file=sys.stderr,
        )
        result.oom_fallback.append(name)
        return time_it(lambda: self.forward(x))

    def run(self, split: Split) -> SplitResult:
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        result = SplitResult(split.name, [], [], [], [], None, None, [] if self.ssim else None, [] if self.ssim else None)
        lr_inputs: list[np.ndarray] = []
        for k, pair in enumerate(split.pairs, 1):
            hr, lr = pair.load_inputs(self.scale)
            x = metrics.uint8_to_tensor(lr, self.data_range).to(self.device)
            sr_tensor, ms = self._timed_forward(x, pair.name, result)
            sr = metrics.tensor_to_uint8(sr_tensor, self.data_range)
            del sr_tensor
            check_sr_shape(pair.name, tuple(sr.shape), lr.shape, None if hr is None else hr.shape, self.scale)
            self._record(result, pair.name, ms, sr, hr)
            if self.tile is not None:
                result.tiled.append(pair.name)
            if self.save_dir is not None:
                write_png(self.save_dir / split.name / f"{pair.name}.png", sr)
            if self.warm_runs:
                lr_inputs.append(lr)
            self.progress(f"{split.name} {k}/{len(split)} {pair.name}: {latest_psnr_text(result)}, {ms:.2f} ms")
        if on_cuda:
            result.split_peak_mib = torch.cuda.max_memory_allocated(self.device) / 1024**2
            self._memory_so_far = max(self._memory_so_far, result.split_peak_mib)
            result.memory_mib = self._memory_so_far
        if self.warm_runs:
            result.warm_runtime_ms = [self._warm_time(lr) for lr in lr_inputs]
        return result

    def _record(self, result: SplitResult, name: str, ms: float, sr: np.ndarray, hr: np.ndarray | None) -> None:
        result.names.append(name)
        result.runtime_ms.append(ms)
        if hr is None:  # LR-only: nothing to measure against
            return
        result.psnr.append(metrics.psnr(sr, hr, crop_border=self.scale))
        result.psnr_y.append(metrics.psnr(sr, hr, crop_border=self.scale, test_y_channel=True))
        if self.ssim:
            result.ssim.append(metrics.ssim(sr, hr, crop_border=self.scale))
            result.ssim_y.append(metrics.ssim(sr, hr, crop_border=self.scale, test_y_channel=True))

    def _warm_time(self, lr: np.ndarray) -> float:
        x = metrics.uint8_to_tensor(lr, self.data_range).to(self.device)
        self.stopwatch.time(lambda: self.forward(x))  # warm-up
        return statistics.median(self.stopwatch.time(lambda: self.forward(x))[1] for _ in range(self.warm_runs))
