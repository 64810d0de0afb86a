"""One entry run end to end: load it, count it, evaluate it on the splits (:func:`run_entry`).

``test_demo.py``, ``package`` and ``batch`` run entries this way; :func:`esrkit.results.entry_record`
renders the run as a results.json entry. Everything that depends on the entry's own code (building,
loading, counting, the forward) runs under :meth:`esrkit.entry.Entry.running_on`, so a file that
hard-codes CUDA runs on the CPU too.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from esrkit.atomic import StagedFolder
from esrkit.challenge import Convention
from esrkit.datasets import Split
from esrkit.device import prepare_model
from esrkit.entry import Entry, Loaded
from esrkit.errors import KitError, first_line
from esrkit.evaluation import Evaluator, LoopOptions, SplitRecord
from esrkit.fastpath import FastForward, FastOptions
from esrkit.api import count
from esrkit.measure.complexity import Complexity
from esrkit.metrics import selected
from esrkit.outputs import DataIdentity, carried_files, write_marker
from esrkit.progress import QUIET, Progress


@dataclass(frozen=True)
class RunOptions:
    """How an entry is run: device, metrics, warm repeats, loop, tiling override, fast pass."""

    device: torch.device
    ssim: bool = False
    warm_runs: int = 0
    warm_images: int | str | None = None  # None: the warm pass on every image; "auto": a tenth of them, 1 to 10
    loop: LoopOptions = LoopOptions()
    tile: int | None = None  # None: the entry's own
    tile_overlap: int | None = None
    fast: FastOptions | None = None
    progress: Progress = field(default=QUIET, compare=False)
    # Around the timed part of the run -- moving the model to its device and every pass over the images -- for a
    # caller that must have the machine to itself there (a batch's team process: nothing else of the batch runs).
    timed_phase: Callable[[], AbstractContextManager[None]] = field(default=nullcontext, compare=False)


@dataclass
class EntryRun:
    """What one entry run measured, before it is written."""

    entry: Entry
    loaded: Loaded
    key: str
    convention: Convention
    device: torch.device
    complexity: Complexity
    splits: list[Split]
    records: list[SplitRecord]
    fast: list[SplitRecord]
    fast_engine: FastForward | None
    fast_error: str | None = None  # the opt-in fast pass failed: the challenge figures stand without it

    @property
    def flops(self) -> int | None:
        """FLOPs (MACs) under the convention's counter (None where that counter could not count)."""
        return self.complexity.flops(self.convention.flops_counter)


def run_entry(entry: Entry, splits: Sequence[Split], convention: Convention, options: RunOptions,
              weights: Path | None = None, save_root: Path | None = None,
              finish: Callable[[EntryRun], None] | None = None, weights_flag: str | None = None,
              sr_dir: Path | None = None, data_fingerprint: str | None = None) -> EntryRun:
    """Load, count and evaluate ``entry``.

    SR images go to ``save_root/<split>/``, staged: they are moved in only once the run -- and ``finish``
    (e.g. merging its results) -- succeeded, each split's folder replaced whole, with a marker naming the data
    (:mod:`esrkit.outputs`). Or, for a caller that stages them itself (a batch's team process, whose images the
    batch moves into place), straight into ``sr_dir/<split>/``. ``data_fingerprint`` is the data's digest when
    the caller has it already (:func:`esrkit.fingerprint.data_fingerprint` of ``splits``). ``weights_flag`` names,
    in messages, the option that gives the weights on the command at hand (default: ``--weights``, or the spec's
    key for a team of a spec file).
    """
    if save_root is not None and sr_dir is not None:
        raise ValueError("give save_root (staged here) or sr_dir (staged by the caller), not both")
    device, progress = options.device, options.progress
    torch.backends.cudnn.benchmark = False
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with entry.running_on(device):
        loaded = entry.load(weights, flag=weights_flag)
        for note in entry.notes:
            progress.write(f"note: {note}")
        with entry.running_on(torch.device("cpu")):  # counted in place on the CPU, the model restored exactly
            complexity = count(loaded.model)
        for counter, why in complexity.errors.items():
            progress.write(f"warning: no {counter} FLOPs: {why}")
        if complexity.varies:
            progress.write(f"warning: {entry.name}: {complexity.probe_note()}")
        staged = StagedFolder(save_root, carried_files(save_root)) if save_root is not None else nullcontext(sr_dir)
        with staged as staging:
            if save_root is not None:  # which data its images come from, and which files are the kit's
                write_marker(staging, DataIdentity.of(splits, data_fingerprint), splits)
            fast: list[SplitRecord] = []
            engine, fast_error = None, None
            with options.timed_phase():
                model = prepare_model(loaded.model, device)
                evaluator = Evaluator(
                    model, scale=entry.scale, data_range=entry.data_range, device=device,  # type: ignore[arg-type]
                    tile=options.tile if options.tile is not None else entry.tile,
                    tile_overlap=options.tile_overlap if options.tile_overlap is not None else entry.tile_overlap,
                    metrics=selected(ssim=options.ssim), warm_runs=options.warm_runs, warm_images=options.warm_images,
                    loop=options.loop,
                    progress=progress, source=f"{entry.name} with {loaded.weights}",
                )
                records = [evaluator.run(split, None if staging is None else staging / split.name) for split in splits]
                if options.fast is not None:
                    try:
                        fast, engine = run_fast(evaluator, options.fast, splits)
                    except (KitError, RuntimeError) as exc:  # an extra pass: its failure does not void the challenge run
                        fast_error = first_line(exc)
                        progress.write(f"warning: the fast pass failed ({fast_error}); the challenge figures stand")
            run = EntryRun(entry, loaded, convention.key(entry), convention, device, complexity, list(splits),
                           records, fast, engine, fast_error)
            if finish is not None:
                finish(run)
    return run


def run_fast(challenge: Evaluator, options: FastOptions, splits: Sequence[Split]) -> tuple[list[SplitRecord], FastForward]:
    """The fast pass after every challenge pass (pipelined off the CPU, where the loop's threads would take the
    forward's cores; no SR images saved), as ``<split>_fast`` records."""
    fast = FastForward(challenge.model, challenge.device, options, copy_out=False,
                       log=lambda msg: challenge.progress.write(f"fast path: {msg}"))
    challenge.progress.write(f"fast path: {fast.describe()}")
    evaluator = Evaluator(challenge.model, scale=challenge.scale, data_range=challenge.data_range, device=challenge.device,
                          tile=challenge.tile, tile_overlap=challenge.forward.tile_overlap, metrics=challenge.metrics,
                          fast=fast, loop=LoopOptions(pipelined=challenge.device.type != "cpu"),
                          progress=challenge.progress,
                          source=challenge.source)
    records = []
    for split in splits:
        r = evaluator.run(split)
        r.split = f"{split.name}_fast"
        records.append(r)
    return records, fast


