"""A validation loop that keeps the GPU busy, with the same per-image results as ``SplitRunner.run``.

:class:`PipelinedRunner` runs a split like :class:`esrkit.runner.SplitRunner` and returns the same
:class:`~esrkit.runner.SplitResult` (same image order and names, the same quantised SR images, PSNR
equal to the numpy metrics' to float64 rounding), but overlaps everything around the forward pass:

- worker threads decode the next pairs ahead (a bounded window of ``prefetch`` images);
- the forward runs on the main thread; the SR image is quantised and PSNR / SSIM are computed with torch
  on the GPU (``metrics.*_torch``), queued without waiting; image k's numbers are read back (from pinned
  memory, after its CUDA event) only once image k+1's forward is queued;
- SR PNGs are written by background threads (atomically, ``write_png``); a failed write is reported as
  an error when the split ends, never swallowed.

Timing modes. ``fast=None`` (faithful): the challenge protocol's forward, fp32 eager; the GPU is
synchronised before the start event, so nothing queued earlier overlaps the timed region, the decoders
and writers start no new job while it runs, and the CUDA events enclose the forward only (exactly the
:class:`~esrkit.runner.Stopwatch`). With a :class:`~esrkit.fastpath.FastForward` (fast): new shapes are
captured/compiled in ``prepare`` outside the timed region, the events still enclose the forward only,
but nothing is synchronised per image (they are read when the split ends). ``SplitResult.engine`` says
which one produced the result.

GPU memory: the peak is taken around each forward (reset just before it) and the maximum over the
split reported, so the metrics' GPU buffers do not enter the challenge's memory figure.
Only the main thread makes CUDA calls, so capturing a CUDA graph never races another thread.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from esrkit import metrics
from esrkit.datasets import ImagePair, Split
from esrkit.errors import KitError
from esrkit.fastpath import FastForward
from esrkit.imageio import write_png
from esrkit.runner import CHALLENGE_ENGINE, SplitResult, SplitRunner, check_sr_shape, forward_tiled, latest_psnr_text

MIB = 1024**2
T = TypeVar("T")


class Gate:
    """Lets worker threads start a job only while open; the main thread closes it around a timed forward."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()

    def run(self, fn: Callable[..., T], *args: object) -> T:
        self._open.wait()
        return fn(*args)

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()


class BackgroundWriter:
    """Writes RGB uint8 arrays as PNG on worker threads; :meth:`close` raises if any write failed.

    At most ``max_pending`` images wait in memory: :meth:`submit` blocks beyond that.
    """

    def __init__(self, workers: int = 2, max_pending: int = 16, gate: Gate | None = None) -> None:
        self._pool = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="esrkit-writer")
        self._slots = threading.BoundedSemaphore(max(max_pending, 1))
        self._gate = gate or Gate()
        self._jobs: list[tuple[Path, Future[None]]] = []

    def submit(self, path: Path, rgb: np.ndarray, write: Callable[[Path, np.ndarray], None] = write_png) -> None:
        self._slots.acquire()
        future = self._pool.submit(self._gate.run, write, path, rgb)
        future.add_done_callback(lambda _: self._slots.release())
        self._jobs.append((path, future))

    def close(self, raise_errors: bool = True) -> None:
        """Wait for every write (``raise_errors=False``: drop the queued ones, on the way out of an error)."""
        self._pool.shutdown(wait=True, cancel_futures=not raise_errors)
        if not raise_errors:
            return
        failed = [(path, f.exception()) for path, f in self._jobs if f.exception() is not None]
        if failed:
            path, exc = failed[0]
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise KitError(
                f"could not write {len(failed)} of {len(self._jobs)} SR image(s); the first, {path}: {reason} "
                f"(check --save_dir: free space, permissions)"
            )


class DeferredTimer:
    """CUDA events around each call, read when :meth:`resolve` is called (no synchronisation per call)."""

    def __init__(self) -> None:
        self._pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def time(self, fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        self._pairs.append((start, end))
        return out, math.nan

    def resolve(self) -> list[float]:
        """Milliseconds of every call so far, in order."""
        if self._pairs:
            self._pairs[-1][1].synchronize()
        return [start.elapsed_time(end) for start, end in self._pairs]


def prefetch(
    pool: ThreadPoolExecutor, pairs: Sequence[ImagePair], scale: int, depth: int, gate: Gate
) -> Iterator[tuple[ImagePair, np.ndarray | None, np.ndarray]]:
    """(pair, HR or None, LR) in the split's order, decoding up to ``depth`` pairs ahead on ``pool``."""
    upcoming = iter(pairs)
    window: deque[tuple[ImagePair, Future[tuple[np.ndarray | None, np.ndarray]]]] = deque(
        (pair, pool.submit(gate.run, pair.load_inputs, scale)) for pair in islice(upcoming, max(depth, 1))
    )
    while window:
        pair, future = window.popleft()
        following = next(upcoming, None)
        if following is not None:
            window.append((following, pool.submit(gate.run, following.load_inputs, scale)))
        hr, lr = future.result()
        yield pair, hr, lr


@dataclass
class _Queued:
    """One image whose numbers are still on their way back from the GPU."""

    name: str
    ms: float
    values: torch.Tensor  # psnr, psnr_y[, ssim, ssim_y] (float64, pinned on CUDA); empty without HR
    sr: torch.Tensor | None  # HxWxC uint8 to save (pinned on CUDA)
    done: torch.cuda.Event | None
    tiled: bool


class PipelinedRunner(SplitRunner):
    """``SplitRunner`` with decoding, metrics and PNG writing overlapped (see the module docstring).

    Takes SplitRunner's arguments, plus ``fast`` (None: faithful challenge timing), the number of
    decoding / writing threads and how many images are decoded ahead.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        fast: FastForward | None = None,
        decode_workers: int = 4,
        write_workers: int = 2,
        prefetch: int = 8,
        **kwargs: object,
    ) -> None:
        super().__init__(model, **kwargs)  # type: ignore[arg-type]
        self.fast = fast
        self.decode_workers = decode_workers
        self.write_workers = write_workers
        self.prefetch = prefetch
        # float64 metrics: on the GPU with CUDA, else (CPU, MPS) on the CPU.
        self.metrics_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        self._gate = Gate()

    @property
    def engine(self) -> str:
        return CHALLENGE_ENGINE if self.fast is None else self.fast.describe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fast is None:
            return super().forward(x)
        if self.tile is None:
            return self.fast(x)
        return forward_tiled(self.fast, x, self.scale, self.tile, self.tile_overlap)

    def run(self, split: Split) -> SplitResult:
        on_cuda = self.device.type == "cuda"
        result = SplitResult(split.name, [], [], [], [], None, None, [] if self.ssim else None,
                             [] if self.ssim else None, engine=self.engine)
        timer = DeferredTimer() if on_cuda and self.fast is not None else None
        writer = BackgroundWriter(self.write_workers, gate=self._gate) if self.save_dir is not None else None
        decoders = ThreadPoolExecutor(max(self.decode_workers, 1), thread_name_prefix="esrkit-decode")
        lr_inputs: list[np.ndarray] = []
        peak = 0.0
        queued: _Queued | None = None
        finished = False
        try:
            for k, (pair, hr, lr) in enumerate(prefetch(decoders, split.pairs, self.scale, self.prefetch, self._gate), 1):
                current, forward_peak = self._launch(pair.name, hr, lr, result, timer)
                peak = max(peak, forward_peak)
                if queued is not None:
                    self._collect(queued, result, writer, split, k - 1)
                queued = current
                if self.warm_runs:
                    lr_inputs.append(lr)
            if queued is not None:
                self._collect(queued, result, writer, split, len(split))
            if timer is not None:
                result.runtime_ms = timer.resolve()
            finished = True
        finally:
            self._gate.open()
            decoders.shutdown(wait=True, cancel_futures=True)
            if writer is not None:
                writer.close(raise_errors=finished)
        if on_cuda:
            result.split_peak_mib = peak
            self._memory_so_far = max(self._memory_so_far, peak)
            result.memory_mib = self._memory_so_far
        if self.warm_runs:
            result.warm_runtime_ms = [self._warm_time(lr) for lr in lr_inputs]
        return result

    def _launch(
        self, name: str, hr: np.ndarray | None, lr: np.ndarray, result: SplitResult, timer: DeferredTimer | None
    ) -> tuple[_Queued, float]:
        """Queue one image's forward, quantisation, metrics and copies back; returns it and the forward's peak MiB."""
        on_cuda = self.device.type == "cuda"
        x = _to_device(metrics.uint8_to_tensor(lr, self.data_range), self.device)  # same strides as SplitRunner's
        if self.fast is not None and self.tile is None:
            self.fast.prepare(x)  # capture / compile a new shape outside the timed region
        peak = 0.0
        if on_cuda:
            if self.fast is None:
                torch.cuda.synchronize(self.device)  # nothing queued earlier runs inside the timed region
            torch.cuda.reset_peak_memory_stats(self.device)
        self._gate.close()
        try:
            sr_tensor, ms = self._timed_forward(x, name, result, timer.time if timer is not None else None)
        finally:
            self._gate.open()
        if on_cuda:
            peak = torch.cuda.max_memory_allocated(self.device) / MIB
        sr = metrics.tensor_to_uint8_torch(sr_tensor, self.data_range).to(self.metrics_device)
        del sr_tensor
        check_sr_shape(name, tuple(sr.shape), lr.shape, None if hr is None else hr.shape, self.scale)
        stacked = self._metrics(sr, hr)
        keep = sr if self.save_dir is not None else None
        done = None
        if on_cuda:
            stacked = _to_pinned(stacked)
            keep = _to_pinned(keep) if keep is not None else None
            done = torch.cuda.Event()
            done.record()
        return _Queued(name, ms, stacked, keep, done, self.tile is not None), peak

    def _metrics(self, sr: torch.Tensor, hr: np.ndarray | None) -> torch.Tensor:
        """psnr, psnr_y[, ssim, ssim_y] of one image, queued on the metrics device (empty without HR)."""
        if hr is None:
            return torch.empty(0, dtype=torch.float64, device=self.metrics_device)
        hr_t = _to_device(torch.from_numpy(np.ascontiguousarray(hr)), self.metrics_device)
        values = [metrics.psnr_torch(sr, hr_t, self.scale), metrics.psnr_torch(sr, hr_t, self.scale, True)]
        if self.ssim:
            values += [metrics.ssim_torch(sr, hr_t, self.scale), metrics.ssim_torch(sr, hr_t, self.scale, True)]
        return torch.stack(values)

    def _collect(self, q: _Queued, result: SplitResult, writer: BackgroundWriter | None, split: Split, k: int) -> None:
        """Wait for one queued image's numbers, record them and hand its SR image to the writer."""
        if q.done is not None:
            q.done.synchronize()
        values = q.values.tolist()
        result.names.append(q.name)
        result.runtime_ms.append(q.ms)
        if values:
            result.psnr.append(values[0])
            result.psnr_y.append(values[1])
        if values and self.ssim:
            result.ssim.append(values[2])
            result.ssim_y.append(values[3])
        if q.tiled:
            result.tiled.append(q.name)
        if writer is not None and q.sr is not None:
            # A pageable copy: pinned buffers are then freed on this thread, never on a writer's.
            rgb = q.sr.numpy().copy() if q.done is not None else q.sr.numpy()
            writer.submit(self.save_dir / split.name / f"{q.name}.png", rgb)
        timing = "" if math.isnan(q.ms) else f", {q.ms:.2f} ms"
        self.progress(f"{split.name} {k}/{len(split)} {q.name}: {latest_psnr_text(result)}{timing}")


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device`` without waiting: through pinned memory (same strides) on CUDA."""
    if device.type != "cuda":
        return t.to(device)
    staged = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, pin_memory=True)
    staged.copy_(t)
    return staged.to(device, non_blocking=True)


def _to_pinned(t: torch.Tensor) -> torch.Tensor:
    """Queue a copy of a CUDA tensor into pinned host memory (read it after a later event)."""
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host
