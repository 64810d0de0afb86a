"""Timing a forward pass: raw samples in milliseconds in, summaries out.

- :class:`Stopwatch` times one call the way the challenge times an image: a pair of CUDA events
  around the call and a synchronisation after it on a GPU, the wall clock (synchronised) elsewhere.
  ``deferred=True`` records the events without synchronising; :meth:`Stopwatch.resolve` reads them.
- :func:`repeat` (isolated calls after a warm-up), :func:`interleaved` (several models alternating,
  so a slowdown of the machine hits them alike), :func:`robust` (``torch.utils.benchmark``'s
  blocked_autorange: median and IQR of blocks) and :func:`wall_seconds` (a whole loop between two
  synchronisations) are built on it.
- :class:`Summary` turns samples into the figures reports print (mean, median, IQR, the cold first).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from esrkit.device import synchronize

Call = Callable[[], object]


def mean(values: Sequence[float]) -> float:
    """The average as the official kits take it, ``sum(values) / len(values)`` (what every ``ave`` key holds,
    runtimes and per-image metrics alike)."""
    return sum(values) / len(values)


class Stopwatch:
    """Times calls in milliseconds: CUDA events on a GPU, the wall clock elsewhere."""

    def __init__(self, device: torch.device, deferred: bool = False) -> None:
        self.device = device
        self.deferred = deferred and device.type == "cuda"
        self._pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        if device.type == "cuda" and not self.deferred:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def time(self, fn: Callable[[], object]) -> tuple[object, float]:
        """``fn()`` and its milliseconds (NaN when deferred: read them with :meth:`resolve`)."""
        if self.deferred:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            self._pairs.append((start, end))
            return out, math.nan
        if self.device.type == "cuda":
            self._start.record()
            out = fn()
            self._end.record()
            torch.cuda.synchronize()
            return out, self._start.elapsed_time(self._end)
        synchronize(self.device)
        t0 = time.perf_counter()
        out = fn()
        synchronize(self.device)
        return out, (time.perf_counter() - t0) * 1e3

    def resolve(self) -> list[float]:
        """Milliseconds of every deferred call so far, in order."""
        if self._pairs:
            self._pairs[-1][1].synchronize()
        return [start.elapsed_time(end) for start, end in self._pairs]


@dataclass(frozen=True)
class Summary:
    """Samples [ms] and what reports take from them."""

    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> "Summary":
        if not samples:
            raise ValueError("no timing samples")
        return cls(tuple(samples))

    @property
    def mean(self) -> float:
        return mean(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def first(self) -> float:
        return self.samples[0]

    @property
    def iqr(self) -> float:
        """Interquartile range (0 for a single sample)."""
        if len(self.samples) < 2:
            return 0.0
        q = statistics.quantiles(self.samples, n=4)
        return q[2] - q[0]


def repeat(fn: Call, device: torch.device, runs: int, warmup: int = 0) -> list[float]:
    """``warmup`` untimed calls, then ``runs`` calls each timed alone (as the challenge times an image)."""
    watch = Stopwatch(device)
    for _ in range(warmup):
        watch.time(fn)
    synchronize(device)
    return [watch.time(fn)[1] for _ in range(runs)]


def interleaved(fns: Sequence[Call], device: torch.device, runs: int, warmup: int = 1) -> list[list[float]]:
    """Per function, ``runs`` timed calls; the functions alternate on every round, after ``warmup`` rounds."""
    watch = Stopwatch(device)
    samples: list[list[float]] = [[] for _ in fns]
    for round_ in range(warmup + runs):
        for i, fn in enumerate(fns):
            ms = watch.time(fn)[1]
            if round_ >= warmup:
                samples[i].append(ms)
    return samples


@dataclass(frozen=True)
class Robust:
    """``torch.utils.benchmark`` blocked_autorange: the median and IQR of its blocks [ms]."""

    median: float
    iqr: float


def robust(fn: Call, min_run_time: float = 1.0) -> Robust:
    """Warm-up and adaptive blocks chosen by ``torch.utils.benchmark`` (CUDA synchronised by the library)."""
    import torch.utils.benchmark as tbench

    m = tbench.Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time)
    return Robust(m.median * 1e3, m.iqr * 1e3)


def wall_seconds(fn: Call, device: torch.device, calls: int = 1) -> float:
    """Seconds for ``calls`` calls of ``fn`` between two synchronisations of ``device``."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return time.perf_counter() - start
