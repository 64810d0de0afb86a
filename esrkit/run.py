"""One entry run end to end: load it, count it, evaluate it on the splits, and render its results entry.

``test_demo.py`` runs one entry this way, ``python -m esrkit.submission batch`` every team of a spec.
Everything that depends on the entry's own code (building, loading, counting, the forward) runs
under :meth:`esrkit.entry.Entry.running_on`, so a file that hard-codes CUDA runs on the CPU too.
"""

from __future__ import annotations

import datetime
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from esrkit import __version__
from esrkit.atomic import StagedFolder
from esrkit.challenge import Convention
from esrkit.datasets import Split
from esrkit.device import device_name, prepare_model
from esrkit.entry import Entry, Loaded
from esrkit.evaluation import Evaluator, LoopOptions, SplitRecord
from esrkit.fastpath import FastForward, FastOptions
from esrkit.measure.complexity import Complexity, count
from esrkit.metrics import selected
from esrkit.progress import QUIET, Progress
from esrkit.results import split_keys


@dataclass(frozen=True)
class RunOptions:
    """How an entry is run: device, metrics, warm repeats, loop, tiling override, fast pass."""

    device: torch.device
    ssim: bool = False
    warm_runs: int = 0
    loop: LoopOptions = LoopOptions()
    tile: int | None = None  # None: the entry's own
    tile_overlap: int | None = None
    fast: FastOptions | None = None
    progress: Progress = field(default=QUIET, compare=False)


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

    @property
    def flops(self) -> int | None:
        """FLOPs (MACs) under the convention's counter (None where that counter could not count)."""
        return self.complexity.flops(self.convention.flops_counter)


def psnr_differences(fast: SplitRecord, challenge: SplitRecord) -> tuple[float, float]:
    """The fast pass's PSNR against the challenge pass's on the same images: (difference of the means, largest
    per-image absolute difference)."""
    per_image = [abs(a - b) for a, b in zip(fast.metric("psnr"), challenge.metric("psnr"))]
    return fast.mean("psnr") - challenge.mean("psnr"), max(per_image)


def run_entry(entry: Entry, splits: Sequence[Split], convention: Convention, options: RunOptions,
              weights: Path | None = None, save_root: Path | None = None) -> EntryRun:
    """Load, count and evaluate ``entry``; SR images go to ``save_root/<split>/`` only if the whole run succeeds."""
    device, progress = options.device, options.progress
    torch.backends.cudnn.benchmark = False
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with entry.running_on(device):
        loaded = entry.load(weights)
        for note in entry.notes:
            progress.write(f"note: {note}")
        complexity = count(loaded.model, counters=("official", "fvcore"))
        for counter, why in complexity.errors.items():
            progress.write(f"warning: no {counter} FLOPs: {why}")
        if complexity.varies:
            progress.write(f"warning: {entry.name}: {complexity.probe_note()}")
        model = prepare_model(loaded.model, device)
        evaluator = Evaluator(
            model, scale=entry.scale, data_range=entry.data_range, device=device,  # type: ignore[arg-type]
            tile=options.tile if options.tile is not None else entry.tile,
            tile_overlap=options.tile_overlap if options.tile_overlap is not None else entry.tile_overlap,
            metrics=selected(ssim=options.ssim), warm_runs=options.warm_runs, loop=options.loop,
            progress=progress, source=f"{entry.name} with {loaded.weights}",
        )
        with StagedFolder(save_root) if save_root is not None else nullcontext() as staging:
            records = [evaluator.run(split, None if staging is None else staging / split.name) for split in splits]
            fast, engine = ([], None) if options.fast is None else run_fast(evaluator, options.fast, splits)
    return EntryRun(entry, loaded, convention.key(entry), convention, device, complexity, list(splits), records,
                    fast, engine)


def run_fast(challenge: Evaluator, options: FastOptions, splits: Sequence[Split]) -> tuple[list[SplitRecord], FastForward]:
    """The fast pass after every challenge pass (pipelined, no SR images saved), as ``<split>_fast`` records."""
    fast = FastForward(challenge.model, challenge.device, options, copy_out=False,
                       log=lambda msg: challenge.progress.write(f"fast path: {msg}"))
    challenge.progress.write(f"fast path: {fast.describe()}")
    evaluator = Evaluator(challenge.model, scale=challenge.scale, data_range=challenge.data_range, device=challenge.device,
                          tile=challenge.tile, tile_overlap=challenge.forward.tile_overlap, metrics=challenge.metrics,
                          fast=fast, loop=LoopOptions(pipelined=True), progress=challenge.progress,
                          source=challenge.source)
    records = []
    for split in splits:
        r = evaluator.run(split)
        r.split = f"{split.name}_fast"
        records.append(r)
    return records, fast


# --- the results entry ---------------------------------------------------------------------------


def model_keys(complexity: Complexity, convention: Convention) -> dict[str, Any]:
    """The official model-level keys (``flops`` under the convention's counter), then the extras."""
    fv = complexity.flops_fvcore
    flops = complexity.flops(convention.flops_counter)
    keys: dict[str, Any] = {
        "activations": complexity.activations / 1e6, "num_conv": complexity.num_conv,
        "flops": None if flops is None else flops / 1e9, "num_parameters": complexity.params / 1e6,
        "flops_counter": convention.counter_label,
        "flops_hook": complexity.flops_official / 1e9, "flops_fvcore": None if fv is None else fv / 1e9,
        "flops_fvcore_unsupported_ops": complexity.fvcore_unsupported if fv is not None else None,
        "complexity_probe": complexity.probe_note(),
    }
    if complexity.varies:
        keys["complexity_input_dependent"] = {k: list(v) for k, v in complexity.varies.items()}
    return keys


def fast_keys(r: SplitRecord, ref: SplitRecord) -> dict[str, Any]:
    """The fast pass's keys (``<split>_fast_*``): as a split (no cold start: after prepare() no image is cold),
    plus the PSNR differences to the challenge pass."""
    keys = split_keys(r, cold_start=False)
    if r.has_metrics:
        keys[f"{r.split}_ave_psnr_diff"], keys[f"{r.split}_psnr_diff_max"] = psnr_differences(r, ref)
    return keys


def result_record(run: EntryRun) -> dict[str, Any]:
    """The results.json entry of a run: the official keys, then this kit's extras (never instead of them)."""
    record: dict[str, Any] = {}
    for r in run.records:
        record.update(split_keys(r))
    record["loop"] = run.records[0].loop
    for r, ref in zip(run.fast, run.records):
        record.update(fast_keys(r, ref))
    if run.fast_engine is not None:
        record.update(fast_engine=run.fast_engine.describe(), fast_setup_ms=run.fast_engine.setup_ms,
                      fast_graph_captures=run.fast_engine.captures)
    record.update(model_keys(run.complexity, run.convention))
    device, entry, split = run.device, run.entry, run.splits[0]
    record.update(
        device=device_name(device),
        device_type=device.type,
        memory_measured=device.type == "cuda",
        timing="CUDA events around the forward pass" if device.type == "cuda" else "wall clock around the forward pass",
        entry=entry.call_text(),
        weights=str(run.loaded.weights),
        weights_loading=run.loaded.report.describe(),
        post_load=entry.post_load,
        results_convention=run.convention.label,
        data_dir=str(split.root),
        layout=split.layout,
        lr_source="made by the kit's MATLAB-bicubic imresize" if split.lr_made_by_kit else "LR files",
        lr_only=not split.has_hr,
        data_range=entry.data_range,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        kit_version=__version__,
        torch_version=torch.__version__,
    )
    if entry.notes:
        record["notes"] = list(entry.notes)
    return record
