"""Running an entry over a split: one loop, in stages -- read, timed forward, quantise, metrics, sinks.

The challenge protocol (``OFFICIAL_KITS.md`` section 1) is the default and is kept exactly: fp32,
``cudnn.benchmark = False``, batch 1, the whole image, the input copied to the device *before* the
timer starts, one pair of CUDA events around the forward only, no warm-up, no repeats, the SR
quantised to uint8 before the metrics, and ``max_memory_allocated`` read after the split (never
reset between splits, so it includes the weights and every earlier split).

The same loop runs *pipelined* by configuration (:class:`LoopOptions`): worker threads decode the
next images ahead, the metrics are queued on the GPU, PNGs are written in the background, and image
k's numbers are read back only once image k+1's forward is queued. Nothing overlaps the timed
forward: the GPU is synchronised before the start event and the workers start no new job while it
runs. With a :class:`~esrkit.fastpath.FastForward` (the opt-in fast path) new shapes are prepared
outside the timed region and the events are read when the split ends. Either way the records are
the same: per image, the name, the runtime, every metric of :data:`esrkit.metrics.METRICS` chosen.

Beside the challenge figures, never instead of them: the first (cold) forward, a warm per-image
time (one warm-up + ``warm_runs`` repeats after the split, median; on every image, or on ``warm_images``
of them spread over the split, so that the extra figure does not cost several times the challenge
pass), and the peak memory of the split alone. Memory: the challenge figure is the process's peak so far (the peak before the split
is folded in before the split's own peak is reset and taken). In the sequential loop everything
around the forward is as the official kit does it (the SR image clamped on the device, then copied
to the host; the metrics on the host); the pipelined loop takes the peak around each forward only,
so that its metrics' GPU buffers stay out of it.

Tiling: an entry's own tile size, ``--tile``, or a fallback to 256-px tiles when the device runs out
of memory on an image (GPU), or would (CPU: predicted from the network's largest activation, or
when an allocation fails); each fallback is said and recorded.
"""

from __future__ import annotations

import math
import re
import statistics
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from esrkit import metrics as metric_table
from esrkit.datasets import ImagePair, Split
from esrkit.device import available_memory_bytes, cuda_only_hint, peak_mib, reset_peak, synchronize
from esrkit.errors import KitError, NonFiniteOutput, first_line
from esrkit.imageio import count_non_finite, quantise, uint8_to_tensor, write_png
from esrkit.measure.timing import Stopwatch, mean, repeat
from esrkit.progress import QUIET, Bar, Progress

CHALLENGE_ENGINE = "fp32 eager (challenge protocol)"
OOM_FALLBACK_TILE = 256
SMALL_LR = 64  # LR side below which a failing forward is most likely a too-small image
DETERMINISM_RERUNS = 2  # further untimed runs of a split whose network is not deterministic (for its PSNR spread)
CPU_LIVE_FACTOR = 6  # tensors of the largest activation's size alive at once (CPU memory prediction)
CPU_PREDICT_ABOVE = 1_000_000  # LR pixels from which the CPU memory is predicted (beyond every DIV2K / LSDIR LR)
CPU_ALLOCATION_ERRORS = re.compile(r"can't allocate memory|not enough memory|bad_alloc|out of memory", re.I)
T = TypeVar("T")


# --- records ------------------------------------------------------------------------------------


@dataclass
class ImageRecord:
    """One image of a split: its runtime [ms] and metrics (none on an LR-only split)."""

    name: str
    runtime_ms: float
    metrics: dict[str, float] = field(default_factory=dict)
    tiled: bool = False
    oom_fallback: bool = False  # the image on which the run fell back to tiles
    warm_ms: float | None = None


@dataclass
class SplitRecord:
    """Everything measured on one split, per image in the split's order, and how it was measured."""

    split: str
    metric_names: tuple[str, ...]
    images: list[ImageRecord] = field(default_factory=list)
    memory_mib: float | None = None  # the challenge figure: max_memory_allocated as never reset (the process's peak
    #   so far, this split included); None off CUDA
    split_peak_mib: float | None = None  # beside it: the peak of this split alone
    engine: str = CHALLENGE_ENGINE  # precision and engine that produced the SR images and the runtimes
    loop: str = "sequential"
    wall_s: float | None = None
    lr_only: bool = False
    deterministic: bool | None = None  # the first image run again gave the same SR image (None: not checked)
    psnr_runs: list[float] = field(default_factory=list)  # when not: the split's mean PSNR in each of its runs

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.images]

    @property
    def runtime_ms(self) -> list[float]:
        return [r.runtime_ms for r in self.images]

    @property
    def has_metrics(self) -> bool:
        """False on an LR-only split: runtimes and SR images, no PSNR/SSIM."""
        return not self.lr_only and bool(self.images)

    def metric(self, name: str) -> list[float]:
        """Per-image values of one metric ([] when it was not computed, or on an LR-only split)."""
        if name not in self.metric_names or not self.has_metrics:
            return []
        return [r.metrics[name] for r in self.images]

    def mean(self, name: str) -> float:
        """The split's average of one metric (as results.json's ``<split>_ave_<name>``)."""
        values = self.metric(name)
        if not values:
            raise KitError(f"{self.split}: no {name} was measured")
        return mean(values)

    @property
    def mean_runtime_ms(self) -> float:
        """The challenge figure: the average per-image runtime (``<split>_ave_runtime``)."""
        return mean(self.runtime_ms)

    @property
    def warm_runtime_ms(self) -> list[float] | None:
        """The warm per-image medians, for the images that had a warm pass (all, or a sample); None: no warm pass."""
        warm = [r.warm_ms for r in self.images if r.warm_ms is not None]
        return warm or None

    @property
    def warm_names(self) -> list[str]:
        """The images :attr:`warm_runtime_ms` is for, in order."""
        return [r.name for r in self.images if r.warm_ms is not None]

    @property
    def tiled(self) -> list[str]:
        return [r.name for r in self.images if r.tiled]

    @property
    def oom_fallback(self) -> list[str]:
        return [r.name for r in self.images if r.oom_fallback]


# --- the forward stage ----------------------------------------------------------------------------


def tile_origins(h: int, w: int, tile: int, overlap: int) -> tuple[int, list[int], list[int]]:
    """The tile size actually used and the top-left corners (rows, columns) of the tiles covering h x w."""
    tile = min(tile, h, w)
    stride = max(tile - overlap, 1)
    return tile, sorted({*range(0, h - tile, stride), h - tile}), sorted({*range(0, w - tile, stride), w - tile})


def forward_tiled(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int,
                  overlap: int, on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Run ``model`` on overlapping tiles of ``x`` and average the overlaps in the output."""
    _, c, h, w = x.shape
    tile, rows, cols = tile_origins(h, w, tile, overlap)
    out = x.new_zeros(1, c, h * scale, w * scale)
    weight = x.new_zeros(1, 1, h * scale, w * scale)
    done, total = 0, len(rows) * len(cols)
    for i in rows:
        for j in cols:
            patch = model(x[:, :, i : i + tile, j : j + tile])
            out[:, :, i * scale : (i + tile) * scale, j * scale : (j + tile) * scale] += patch
            weight[:, :, i * scale : (i + tile) * scale, j * scale : (j + tile) * scale] += 1
            done += 1
            if on_tile is not None:
                on_tile(done, total)
    return out / weight


def forward_failed(name: str, x: torch.Tensor, exc: BaseException) -> KitError:
    """One line for a forward pass that raised: which image, its LR size, torch's first line and a hint."""
    h, w = x.shape[-2:]
    hint = cuda_only_hint(exc) or (
        "the image may be smaller than the network supports (ESA's stride-2 conv and 7x7 pooling need about "
        "15x15 LR pixels): remove or enlarge it" if min(h, w) < SMALL_LR else
        "check that the entry, its weights and --device fit together")
    return KitError(f"the model failed on {name} (LR {w}x{h}): {first_line(exc)} -- {hint}")


def check_sr_shape(name: str, sr: tuple[int, ...], lr: tuple[int, ...], hr: tuple[int, ...] | None, scale: int) -> None:
    """Stop with a clear message when the SR image (HxWxC) is not the HR's size (LR x scale when there is no HR)."""
    hr = tuple(hr) if hr is not None else (lr[0] * scale, lr[1] * scale, *lr[2:])
    if tuple(sr) != hr:
        raise KitError(
            f"{name}: the model returned {sr[1]}x{sr[0]} for a {lr[1]}x{lr[0]} "
            f"input; x{scale} needs {hr[1]}x{hr[0]} (wrong scale for this entry?)"
        )


def largest_activation_per_pixel(model: nn.Module, probe: int = 32) -> float:
    """Elements per LR pixel of the largest output of any module, on a ``probe`` x ``probe`` input."""
    largest = 0
    handles = []

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel())

    for module in model.modules():
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            param = next(model.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            model(torch.zeros(1, 3, probe, probe, device=device))
    except Exception:  # noqa: BLE001 - a network that cannot run on a tiny probe: no prediction
        return 0.0
    finally:
        for h in handles:
            h.remove()
    return largest / (probe * probe)


class Forward:
    """The timed stage: the model or a fast path, the entry's tiling, and the fallback to tiles."""

    def __init__(self, model: nn.Module, scale: int, device: torch.device, tile: int | None, tile_overlap: int,
                 fast: Callable[[torch.Tensor], torch.Tensor] | None, progress: Progress) -> None:
        self.model = model
        self.call: Callable[[torch.Tensor], torch.Tensor] = fast if fast is not None else model
        self.scale = scale
        self.device = device
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.progress = progress
        self._per_pixel: float | None = None

    def __call__(self, x: torch.Tensor, on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
        if self.tile is None:
            return self.call(x)
        return forward_tiled(self.call, x, self.scale, self.tile, self.tile_overlap, on_tile)

    def timed(self, x: torch.Tensor, name: str, watch: Stopwatch) -> tuple[torch.Tensor, float, bool]:
        """The timed forward of one image: (output, ms, whether this image made the run fall back to tiles)."""
        if (self.device.type == "cpu" and self.tile is None and x.shape[-2] * x.shape[-1] > CPU_PREDICT_ABOVE
                and self._cpu_would_overflow(x, name)):
            return (*self._tiled_fallback(x, name, watch), True)
        try:
            out, ms = watch.time(lambda: self(x))
            return _checked_output(out, name, x), ms, False
        except torch.OutOfMemoryError:
            why = "out of GPU memory"
        except RuntimeError as exc:
            if not (self.device.type == "cpu" and CPU_ALLOCATION_ERRORS.search(str(exc))):
                raise forward_failed(name, x, exc) from None
            why = "out of memory"
        except KitError:
            raise
        except Exception as exc:  # a team's forward can raise anything
            raise forward_failed(name, x, exc) from None
        # Retried here, once the failed forward's frames (and the memory they hold) are released.
        return (*self._retry_tiled(x, name, watch, why), True)

    def _cpu_would_overflow(self, x: torch.Tensor, name: str) -> bool:
        """On the CPU, tile from now on when the image would not fit in the memory available."""
        available = available_memory_bytes()
        if available is None:
            return False
        if self._per_pixel is None:
            self._per_pixel = largest_activation_per_pixel(self.model)
        pixels = x.shape[-2] * x.shape[-1]
        needed = CPU_LIVE_FACTOR * self._per_pixel * pixels * x.element_size()
        if needed <= available:
            return False
        self._fall_back(name, x, f"needs about {needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available")
        return True

    def _fall_back(self, name: str, x: torch.Tensor, why: str) -> None:
        self.tile = OOM_FALLBACK_TILE
        self.progress.write(
            f"warning: {name} ({x.shape[-1]}x{x.shape[-2]} LR) {why}; falling back to tiled inference (tile "
            f"{self.tile}, overlap {self.tile_overlap}) for this and the following images -- recorded in "
            f"<split>_oom_tiled_fallback"
        )

    def _retry_tiled(self, x: torch.Tensor, name: str, watch: Stopwatch, why: str) -> tuple[torch.Tensor, float]:
        if self.tile is not None and self.tile <= OOM_FALLBACK_TILE:
            raise KitError(f"{why} on {name} even with {self.tile}-px tiles: use a smaller --tile"
                           f"{' or --device cpu' if self.device.type == 'cuda' else ''}")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._fall_back(name, x, why)
        return self._tiled_fallback(x, name, watch)

    def _tiled_fallback(self, x: torch.Tensor, name: str, watch: Stopwatch) -> tuple[torch.Tensor, float]:
        """The image that made the run fall back, tiled, with a bar over its tiles (it may take a while)."""
        _, rows, cols = tile_origins(x.shape[-2], x.shape[-1], self.tile or OOM_FALLBACK_TILE, self.tile_overlap)
        with self.progress.bar(len(rows) * len(cols), f"{name} tiled", unit="tile") as bar:
            out, ms = watch.time(lambda: self(x, on_tile=lambda done, total: bar.advance()))
        return _checked_output(out, name, x), ms


def _checked_output(out: object, name: str, x: torch.Tensor) -> torch.Tensor:
    """The forward's output must be one image, 1xCxHxW: anything else is one line naming the image."""
    if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != 1:
        got = f"a {type(out).__name__}" if not isinstance(out, torch.Tensor) else f"a tensor of shape {tuple(out.shape)}"
        raise KitError(f"the model returned {got} for {name} (LR {x.shape[-1]}x{x.shape[-2]}); an SR network returns "
                       f"one 1x3xHxW image tensor")
    return out


# --- the read and write stages --------------------------------------------------------------------


class Gate:
    """Keeps worker jobs out of a timed region: while closed no job starts, and closing waits for the jobs
    already running to finish, so nothing runs beside the timed forward."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = True
        self._active = 0

    def run(self, fn: Callable[..., T], *args: object) -> T:
        with self._cond:
            self._cond.wait_for(lambda: self._open)
            self._active += 1
        try:
            return fn(*args)
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextmanager
    def closed(self) -> Iterator[None]:
        with self._cond:
            self._open = False
            self._cond.wait_for(lambda: self._active == 0)
        try:
            yield
        finally:
            with self._cond:
                self._open = True
                self._cond.notify_all()


Item = tuple[ImagePair, "np.ndarray | None", np.ndarray]


def read_sequentially(pairs: Sequence[ImagePair], scale: int) -> Iterator[Item]:
    for pair in pairs:
        hr, lr = pair.load_inputs(scale)
        yield pair, hr, lr


def read_ahead(pool: ThreadPoolExecutor, pairs: Sequence[ImagePair], scale: int, depth: int, gate: Gate) -> Iterator[Item]:
    """(pair, HR or None, LR) in the split's order, decoding up to ``depth`` pairs ahead on ``pool``."""
    upcoming = iter(pairs)
    window: deque[tuple[ImagePair, Future]] = deque(
        (pair, pool.submit(gate.run, pair.load_inputs, scale)) for pair in islice(upcoming, max(depth, 1))
    )
    while window:
        pair, future = window.popleft()
        following = next(upcoming, None)
        if following is not None:
            window.append((following, pool.submit(gate.run, following.load_inputs, scale)))
        hr, lr = future.result()
        yield pair, hr, lr


class ImageWriter:
    """Writes SR PNGs: at once (``workers=0``) or on worker threads, at most ``max_pending`` waiting.

    :meth:`close` waits for every write and raises if one failed (``raise_errors=False`` on the way
    out of an error: queued writes are dropped).
    """

    def __init__(self, workers: int = 0, max_pending: int = 16, gate: Gate | None = None,
                 write: Callable[[Path, np.ndarray], None] = write_png) -> None:
        self._write = write
        self._gate = gate or Gate()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="esrkit-writer") if workers > 0 else None
        self._slots = threading.BoundedSemaphore(max(max_pending, 1))
        self._jobs: list[tuple[Path, Future]] = []

    def submit(self, path: Path, rgb: np.ndarray) -> None:
        if self._pool is None:
            self._write(path, rgb)
            return
        self._slots.acquire()
        future = self._pool.submit(self._gate.run, self._write, path, rgb)
        future.add_done_callback(lambda _: self._slots.release())
        self._jobs.append((path, future))

    def close(self, raise_errors: bool = True) -> None:
        if self._pool is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=not raise_errors)
        if not raise_errors:
            return
        failed = [(path, f.exception()) for path, f in self._jobs if f.exception() is not None]
        if failed:
            path, exc = failed[0]
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise KitError(f"could not write {len(failed)} of {len(self._jobs)} SR image(s); the first, {path}: "
                           f"{reason} (check --save_dir: free space, permissions)")


# --- the loop -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopOptions:
    """Sequential (the official kit's loop) or pipelined; threads and read-ahead of the pipelined one."""

    pipelined: bool = False
    decode_workers: int = 4
    write_workers: int = 2
    prefetch: int = 8

    @property
    def name(self) -> str:
        return "pipelined" if self.pipelined else "sequential"


@dataclass
class _Pending:
    """One image whose numbers may still be on their way back from the GPU."""

    name: str
    ms: float
    scores: dict[str, float]  # on the host: metric name -> value
    queued: torch.Tensor | None  # on CUDA: [non-finite count, *metric values] in pinned memory, after ``done``
    queued_names: tuple[str, ...]
    bad_values: int  # on the host: NaN/Inf count of the output
    sr: np.ndarray | torch.Tensor  # HxWxC uint8 to save (pinned on the host when queued)
    done: torch.cuda.Event | None
    tiled: bool
    fell_back: bool


def _to_device(t: torch.Tensor, device: torch.device, pinned: bool) -> torch.Tensor:
    """Copy a CPU tensor to ``device``; ``pinned``: through pinned memory (same strides), without waiting."""
    if device.type != "cuda" or not pinned:
        return t.to(device)
    staged = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, pin_memory=True)
    staged.copy_(t)
    return staged.to(device, non_blocking=True)


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """Queue a copy of a CUDA tensor into pinned host memory (read it after a later event)."""
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host


class FastPath(Protocol):
    """What the loop needs of a fast path (:class:`esrkit.fastpath.FastForward`)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def prepare(self, x: torch.Tensor) -> float: ...

    def describe(self) -> str: ...


AUTO = "auto"
WARM_FRACTION, WARM_MAX = 10, 10  # auto: a tenth of the split's images, 1 to 10 of them


def warm_sample(n: int, images: int | str | None) -> list[int]:
    """The indices of the images that get a warm pass: all (``images`` None, or >= ``n``), else ``images`` of them
    (``"auto"``: a tenth of the split, 1 to 10) spread evenly over the split, first and last included -- the warm
    figure is then a sample's, and says so."""
    if images == AUTO:
        images = max(1, min(WARM_MAX, round(n / WARM_FRACTION)))
    if images is None or images >= n:
        return list(range(n))
    if images <= 1:
        return [n // 2] if images == 1 else []
    return sorted({round(i * (n - 1) / (images - 1)) for i in range(images)})


class Evaluator:
    """Runs one prepared model over splits (see the module docstring); :meth:`run` returns a :class:`SplitRecord`.

    ``source`` names the model in messages (e.g. the entry and its weights file).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        scale: int,
        data_range: float,
        device: torch.device,
        tile: int | None = None,
        tile_overlap: int = 32,
        metrics: Sequence[metric_table.Metric] | None = None,
        warm_runs: int = 0,
        warm_images: int | str | None = None,
        fast: FastPath | None = None,
        loop: LoopOptions = LoopOptions(),
        progress: Progress = QUIET,
        source: str = "the model",
    ) -> None:
        self.model = model
        self.scale = scale
        self.data_range = data_range
        self.device = device
        self.metrics = tuple(metrics if metrics is not None else metric_table.selected())
        self.warm_runs = warm_runs
        self.warm_images = warm_images
        self.fast = fast
        self.loop = loop
        self.progress = progress
        self.source = source
        self.forward = Forward(model, scale, device, tile, tile_overlap, fast, progress)
        self._gate = Gate()
        self._memory_so_far = 0.0

    @property
    def engine(self) -> str:
        return CHALLENGE_ENGINE if self.fast is None else self.fast.describe()

    @property
    def tile(self) -> int | None:
        return self.forward.tile

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def queued(self) -> bool:
        """The pipelined loop on CUDA: inputs and results cross through pinned memory, metrics are queued on
        the GPU. Elsewhere -- and in the sequential (official) loop always -- the SR image comes to the host
        as the official ``tensor2uint`` brings it, and the metrics are computed there with numpy."""
        return self.on_cuda and self.loop.pipelined

    def run(self, split: Split, save_dir: Path | None = None) -> SplitRecord:
        """Every image of ``split``; SR PNGs go to ``save_dir/<name>.png`` when given."""
        with torch.cuda.device(self.device) if self.on_cuda else nullcontext():  # cuda:N is the current device
            return self._run(split, save_dir)

    def _run(self, split: Split, save_dir: Path | None) -> SplitRecord:
        record = SplitRecord(split.name, tuple(m.name for m in self.metrics), engine=self.engine,
                             loop=self.loop.name, lr_only=not split.has_hr)
        watch = Stopwatch(self.device, deferred=self.on_cuda and self.fast is not None)
        if self.on_cuda:
            # The official figure is max_memory_allocated never reset: what was allocated before this split
            # (the weights, earlier splits) is folded in before the split's own peak is taken.
            self._memory_so_far = max(self._memory_so_far, peak_mib(self.device) or 0.0)
            if not self.loop.pipelined:
                reset_peak(self.device)
        lag = 1 if self.loop.pipelined else 0
        writer = ImageWriter(self.loop.write_workers if self.loop.pipelined else 0, gate=self._gate)
        decoders = (ThreadPoolExecutor(max(self.loop.decode_workers, 1), thread_name_prefix="esrkit-decode")
                    if self.loop.pipelined else None)
        items = (read_ahead(decoders, split.pairs, self.scale, self.loop.prefetch, self._gate) if decoders
                 else read_sequentially(split.pairs, self.scale))
        pending: deque[_Pending] = deque()
        warm_inputs: dict[int, np.ndarray] = {}  # image index -> LR, for the images of the warm pass
        first: dict[str, np.ndarray] = {}  # the first image's LR and SR, to run it again (determinism)
        sampled = set(warm_sample(len(split), self.warm_images)) if self.warm_runs else set()
        peak = 0.0
        finished = False
        t0 = time.perf_counter()
        try:
            with self.progress.bar(len(split), f"{split.name} ({record.loop})") as bar:
                for index, (pair, hr, lr) in enumerate(items):
                    item, forward_peak = self._launch(pair.name, hr, lr, watch)
                    peak = max(peak, forward_peak)
                    pending.append(item)
                    if index in sampled:
                        warm_inputs[index] = lr
                    if index == 0:
                        first["lr"] = lr
                    while len(pending) > lag:
                        self._collect(pending.popleft(), record, writer, save_dir, bar, first)
                while pending:
                    self._collect(pending.popleft(), record, writer, save_dir, bar, first)
            if watch.deferred:
                for image, ms in zip(record.images, watch.resolve()):
                    image.runtime_ms = ms
            finished = True
        finally:
            if decoders is not None:
                decoders.shutdown(wait=True, cancel_futures=True)
            writer.close(raise_errors=finished)
        record.wall_s = time.perf_counter() - t0
        if self.on_cuda:
            split_peak = peak if self.loop.pipelined else (peak_mib(self.device) or 0.0)
            record.split_peak_mib = split_peak
            self._memory_so_far = max(self._memory_so_far, split_peak)
            record.memory_mib = self._memory_so_far
        if self.warm_runs:
            self._warm_pass(record, warm_inputs)
        if self.fast is None and "sr" in first:
            self._check_determinism(record, split, first["lr"], first["sr"])
        return record

    def _launch(self, name: str, hr: np.ndarray | None, lr: np.ndarray, watch: Stopwatch) -> tuple[_Pending, float]:
        """Queue one image's forward, quantisation, metrics and copies back; returns it and the forward's peak MiB."""
        x = _to_device(uint8_to_tensor(lr, self.data_range), self.device, self.queued)  # same strides in both loops
        if self.fast is not None and self.forward.tile is None:
            self.fast.prepare(x)  # capture / compile a new shape outside the timed region
        if self.on_cuda and self.loop.pipelined:
            if self.fast is None:
                synchronize(self.device)  # nothing queued earlier runs inside the timed region
            reset_peak(self.device)
        tiled = self.forward.tile is not None
        with self._gate.closed() if self.loop.pipelined else nullcontext():
            out, ms, fell_back = self.forward.timed(x, name, watch)
        forward_peak = (peak_mib(self.device) or 0.0) if self.loop.pipelined else 0.0
        del x
        if self.queued:
            sr = quantise(out, self.data_range)
            bad = (~torch.isfinite(out)).sum()
            del out
            check_sr_shape(name, tuple(sr.shape), lr.shape, None if hr is None else hr.shape, self.scale)
            scores = {}
            if hr is not None:
                hr_t = _to_device(torch.from_numpy(np.ascontiguousarray(hr)), self.device, True)
                scores = metric_table.score_all(self.metrics, sr, hr_t, self.scale)
            queued = _to_host(torch.stack([bad.double(), *scores.values()]))  # type: ignore[list-item]
            done = torch.cuda.Event()
            done.record()
            return _Pending(name, ms, {}, queued, tuple(scores), 0, _to_host(sr), done, tiled or fell_back,
                            fell_back), forward_peak
        # NaN/Inf counted before the clamp (which would turn an Inf into the range's end); then tensor2uint's device
        # part -- the clamp, in place as the official kit's clamp_ (no second output-sized buffer in the memory
        # peak) -- and the copy to the host; the rest on the host, bit-identical.
        bad = count_non_finite(out)
        host = out.detach().float().clamp_(0, self.data_range).cpu()
        del out
        sr_host = quantise(host, self.data_range).numpy()
        check_sr_shape(name, tuple(sr_host.shape), lr.shape, None if hr is None else hr.shape, self.scale)
        scores = {} if hr is None else metric_table.score_all(self.metrics, sr_host, hr, self.scale)
        return _Pending(name, ms, scores, None, (), bad, sr_host, None, tiled or fell_back, fell_back), forward_peak

    def _collect(self, item: _Pending, record: SplitRecord, writer: ImageWriter, save_dir: Path | None, bar: Bar,
                 first: dict[str, np.ndarray]) -> None:
        """Wait for one image's numbers, check them, record them and hand its SR image to the writer (the first
        image's is kept in ``first`` too)."""
        bad, scores, rgb = item.bad_values, item.scores, item.sr
        if item.queued is not None:
            if item.done is not None:
                item.done.synchronize()
            values = item.queued.tolist()
            bad, scores = int(values[0]), dict(zip(item.queued_names, values[1:]))
            # A pageable copy: pinned buffers are then freed on this thread, never on a writer's.
            rgb = item.sr.numpy().copy()  # type: ignore[union-attr]
        if bad:
            raise NonFiniteOutput(f"{self.source} gave {bad} non-finite value(s) (NaN/Inf) on {item.name}: broken "
                                  f"weights or a numerically unstable model -- no PSNR is reported for it")
        record.images.append(ImageRecord(item.name, item.ms, scores, item.tiled, item.fell_back))
        if len(record.images) == 1:
            first["sr"] = rgb  # type: ignore[assignment]
        if save_dir is not None:
            writer.submit(save_dir / f"{item.name}.png", rgb)  # type: ignore[arg-type]
        psnr = f"{scores['psnr']:.2f} dB" if "psnr" in scores else "no HR"
        timing = "" if math.isnan(item.ms) else f", {item.ms:.1f} ms"
        bar.advance(f"{item.name}: {psnr}{timing}")

    def _sr_image(self, lr: np.ndarray) -> np.ndarray:
        """The quantised SR image of one LR image, untimed (as the challenge pass makes it)."""
        x = uint8_to_tensor(lr, self.data_range).to(self.device)
        out = self.forward(x)
        return quantise(out.detach().float().clamp_(0, self.data_range).cpu(), self.data_range).numpy()

    def _check_determinism(self, record: SplitRecord, split: Split, lr: np.ndarray, sr: np.ndarray) -> None:
        """The first image run once more: the same SR image, or a network whose output is not a function of its
        input (it samples at inference: dropout left on, gumbel-softmax, noise) -- then the whole split runs
        ``DETERMINISM_RERUNS`` more times, untimed, and its mean PSNR in each run is recorded (their spread says
        how much the one figure of the challenge pass could move). Beside the challenge figures, never instead."""
        record.deterministic = bool(np.array_equal(self._sr_image(lr), sr))
        if record.deterministic or not record.has_metrics or "psnr" not in record.metric_names:
            return
        self.progress.write(f"warning: {self.source}: the same input twice gave different SR images ({record.images[0].name}): "
                            f"the network is not deterministic; running {split.name} {DETERMINISM_RERUNS} more times, "
                            f"untimed, for the spread of its PSNR")
        psnr = metric_table.METRICS["psnr"]
        runs = [record.mean("psnr")]
        for _ in range(DETERMINISM_RERUNS):
            values = [float(psnr.compute(self._sr_image(lr_img), hr, self.scale)) for _, hr, lr_img in
                      read_sequentially(split.pairs, self.scale)]
            runs.append(mean(values))
        record.psnr_runs = runs

    def _warm_pass(self, record: SplitRecord, inputs: dict[int, np.ndarray]) -> None:
        """Per image of the sample, one warm-up and ``warm_runs`` timed repeats, median (beside the challenge figure)."""
        with self.progress.bar(len(inputs), f"{record.split} warm timing (x{self.warm_runs})") as bar:
            for index, lr in sorted(inputs.items()):
                image = record.images[index]
                x = uint8_to_tensor(lr, self.data_range).to(self.device)
                image.warm_ms = statistics.median(repeat(lambda: self.forward(x), self.device, self.warm_runs, warmup=1))
                bar.advance(f"{image.name}: {image.warm_ms:.1f} ms")
