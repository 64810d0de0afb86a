"""``python -m benchmarks.speed``: the fast path and the pipelined loop against the challenge protocol.

    python -m benchmarks.speed --data_dir ../shared/data/benchmarks/B100 --out speed.md     # on a GPU
    python -m benchmarks.speed --limit 3 --out speed_cpu.md                                 # tiny, on CPU

Two questions in one run, on the device at hand (its name is printed and written with the table):

1. Forward. Per entry, at fixed LR sizes: the challenge protocol (fp32, eager, ``cudnn.benchmark``
   off, contiguous; the entry's cold first call, then the median of ``--runs`` isolated calls, each
   between CUDA events and synchronised as the challenge times one image) against each fast-path
   variant (same timing, after ``prepare()``: capture/compile/autotune is reported apart as setup).
   Ratio = variant / challenge warm median. The variant's PSNR against the challenge path's on every
   image of ``--data_dir`` (and ``--psnr_dirs``): difference of the means and the largest per image.
2. End to end, SR images saved, on ``--data_dir``: the sequential official-style loop
   (:class:`~esrkit.evaluation.Evaluator`: decode, forward, metrics on the host, PNG write, one image after another)
   against the same loop pipelined (faithful timing) and the pipelined loop with the ``--fast`` path;
   wall time, ratio, PSNR equality, identical SR pixels, and the faithful per-image runtime of both loops.

The Markdown table is rewritten atomically after every entry, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from benchmarks.measure import fresh_model, weights_per_entry
from esrkit import __version__
from esrkit.atomic import atomic_write, check_writable_file
from esrkit.cli import run_guarded
from esrkit.datasets import Split, open_split
from esrkit.device import device_name, free_device, pick_device
from esrkit.entry import Entry
from esrkit.evaluation import CHALLENGE_ENGINE, Evaluator, LoopOptions, SplitRecord
from esrkit.fastpath import FAST, FastForward, FastOptions
from esrkit.imageio import read_rgb, uint8_to_tensor
from esrkit.measure.probe import random_lr
from esrkit.measure import timing
from esrkit.metrics import selected
from esrkit.paths import shared_path
from esrkit.registry import get_entry

DEFAULT_ENTRIES = ["MLRN-entire", "RFDN", "RLFN", "EFDN", "IMDN"]
DEFAULT_DATA = shared_path("data", "benchmarks", "B100")
TARGET_RATIO, TARGET_SPEEDUP, TARGET_PSNR_DB = 0.30, 2.0, 0.01

VARIANTS: dict[str, FastOptions] = {
    "fp32-cudnn": FastOptions("fp32", channels_last=False, cudnn_benchmark=True),
    "fp32-cl-graphs": FastOptions("fp32", channels_last=True, cudnn_benchmark=True, engine="graphs"),
    "fp16-cl-cudnn": FastOptions("fp16", channels_last=True, cudnn_benchmark=True),
    "fast": FAST,  # fp16, channels_last, cudnn autotune, CUDA graphs
    "bf16-cl-graphs": FastOptions("bf16", channels_last=True, cudnn_benchmark=True, engine="graphs"),
}
COMPILE_VARIANTS: dict[str, FastOptions] = {
    "fp16-cl-compile": FastOptions("fp16", channels_last=True, cudnn_benchmark=True, engine="compile"),
    "fp16-cl-compile-graphs": FastOptions("fp16", channels_last=True, cudnn_benchmark=True, engine="compile+graphs"),
}


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 339x510") from None
    return h, w


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_id", nargs="+", default=DEFAULT_ENTRIES, help="entries by name or id")
    p.add_argument("--weights", nargs="+", default=None,
                   help="weights per --model_id, in order; '-' = the entry's model_zoo file (untrained if missing)")
    p.add_argument("--data_dir", type=Path, default=DEFAULT_DATA,
                   help=f"benchmark set for the PSNR check and the end-to-end loop (default {DEFAULT_DATA})")
    p.add_argument("--psnr_dirs", nargs="*", type=Path, default=[], help="more sets for the PSNR check (e.g. Set5 Set14)")
    p.add_argument("--limit", type=int, default=0, help="at most this many images per set (0: all)")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=None,
                   help="LR sizes HxW for the forward timing (default 339x510 256x256; 48x64 on CPU)")
    p.add_argument("--runs", type=int, default=None, help="timed isolated calls per size (default 50; 3 on CPU)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *COMPILE_VARIANTS],
                   help="fast-path variants for every entry")
    p.add_argument("--compile_for", nargs="*", default=["MLRN-entire"],
                   help="entries that also get the torch.compile variants (CUDA only; none: no compile)")
    p.add_argument("--compile_mode", default="default", help="torch.compile mode of the compile variants")
    p.add_argument("--e2e_model", default=None, help="entry of the end-to-end comparison (default: the first --model_id)")
    p.add_argument("--rounds", type=int, default=None, help="end-to-end rounds, loops alternating (default 2; 1 on CPU)")
    p.add_argument("--no_e2e", action="store_true", help="skip the end-to-end comparison")
    p.add_argument("--profile", action="store_true",
                   help="also list the top GPU kernels of the first entry at the first size (CUDA only)")
    p.add_argument("--ssim", action="store_true", help="end to end: also SSIM (RGB and Y)")
    p.add_argument("--decode_workers", type=int, default=4)
    p.add_argument("--write_workers", type=int, default=4)
    p.add_argument("--work_dir", type=Path, default=None, help="where the SR images go (default: a temporary folder, removed)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--out", type=Path, default=Path("speed.md"), help="Markdown table (written atomically)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------- forward


@dataclass
class Row:
    """One entry x one way of running it: ms per size, setup, PSNR differences per set."""

    label: str
    engine: str
    ms: dict[str, float] = field(default_factory=dict)
    cold_ms: dict[str, float] = field(default_factory=dict)
    setup_s: float | None = None
    psnr: dict[str, list[float]] = field(default_factory=dict)  # per set, per image
    psnr_diff: dict[str, tuple[float, float]] = field(default_factory=dict)  # per set: mean diff, max |diff|
    note: str = ""


@dataclass
class EntryRows:
    entry: Entry
    trained: bool
    challenge: Row
    variants: list[Row] = field(default_factory=list)


def isolated_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device, runs: int) -> float:
    """Median of ``runs`` calls, each timed alone (events + synchronise, as the challenge times an image)."""
    return statistics.median(timing.repeat(lambda: fn(x), device, max(runs, 1)))


def psnr_pass(model: nn.Module, entry: Entry, device: torch.device, sets: Sequence[Split],
              fast: FastForward | None) -> dict[str, list[float]]:
    """Per-image PSNR on every set through the pipelined loop (faithful when ``fast`` is None)."""
    evaluator = Evaluator(model, scale=entry.scale, data_range=entry.data_range, device=device, tile=entry.tile,
                          tile_overlap=entry.tile_overlap, fast=fast, loop=LoopOptions(pipelined=True), source=entry.name)
    return {s.root.name: evaluator.run(s).metric("psnr") for s in sets}


def measure_entry(entry: Entry, weights: Path | None, device: torch.device, sizes: Sequence[tuple[int, int]],
                  runs: int, variants: dict[str, FastOptions], sets: Sequence[Split]) -> EntryRows:
    """The challenge protocol and every variant of one entry (see the module docstring)."""
    model, trained = fresh_model(entry, weights, device, untrained=True)
    inputs = {f"{h}x{w}": random_lr(h, w, entry.data_range, device) for h, w in sizes}
    challenge = Row("challenge protocol", CHALLENGE_ENGINE)
    torch.backends.cudnn.benchmark = False
    for key, x in inputs.items():  # called as the evaluation loop calls it (no no_grad: nothing requires grad)
        challenge.cold_ms[key] = timing.Stopwatch(device).time(lambda: model(x))[1]
        challenge.ms[key] = isolated_ms(model, x, device, runs)
    challenge.psnr = psnr_pass(model, entry, device, sets, None)
    rows = EntryRows(entry, trained, challenge)
    seen: dict[FastOptions, str] = {}
    for label, options in variants.items():
        fast = FastForward(model, device, options, copy_out=False, log=lambda msg: None)
        row = Row(label, fast.describe())
        rows.variants.append(row)
        if fast.options in seen:  # what this device really runs was measured already
            row.note = f"runs as {seen[fast.options]} on {device.type}"
            continue
        seen[fast.options] = label
        try:
            measure_variant(row, fast, model, entry, device, inputs, runs, sets, challenge)
        except Exception as exc:  # one broken engine (a compiler error, say) must not lose the other rows
            row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            print(f"  {entry.name} {label}: {row.note}", file=sys.stderr, flush=True)
        else:
            print(f"  {entry.name} {label}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in row.ms.items()), flush=True)
        del fast
        free_device(device)
    return rows


def measure_variant(row: Row, fast: FastForward, model: nn.Module, entry: Entry, device: torch.device,
                    inputs: dict[str, torch.Tensor], runs: int, sets: Sequence[Split], challenge: Row) -> None:
    """Time one fast-path variant at every input size and compare its PSNR with the challenge path's."""
    for key, x in inputs.items():
        fast.prepare(x)
        row.ms[key] = isolated_ms(fast, x, device, runs)
    row.psnr = psnr_pass(model, entry, device, sets, fast)
    row.setup_s = fast.setup_ms / 1e3
    for name, ref in challenge.psnr.items():
        diffs = [a - b for a, b in zip(row.psnr[name], ref)]
        row.psnr_diff[name] = (statistics.fmean(row.psnr[name]) - statistics.fmean(ref), max(map(abs, diffs)))


# ----------------------------------------------------------------------------------------------- end to end


@dataclass
class Loop:
    label: str
    engine: str
    walls: list[float] = field(default_factory=list)
    result: SplitRecord | None = None
    out_dir: Path | None = None

    @property
    def best(self) -> float:
        return min(self.walls)


def end_to_end(entry: Entry, weights: Path | None, device: torch.device, split: Split, rounds: int, ssim: bool,
               work: Path, decode_workers: int, write_workers: int) -> tuple[list[Loop], bool]:
    """Wall time of the sequential and the pipelined loops on ``split``, SR images saved, loops alternating."""
    model, trained = fresh_model(entry, weights, device, untrained=True)
    for pair in split.pairs:  # the same page cache for every loop
        for path in (pair.hr_path, pair.lr_path):
            if path is not None:
                path.read_bytes()
    lr = split.pairs[0].load_lr(entry.scale)
    model(uint8_to_tensor(lr, entry.data_range).to(device))  # CUDA / cuDNN initialised before any loop
    common = dict(scale=entry.scale, data_range=entry.data_range, device=device, tile=entry.tile,
                  tile_overlap=entry.tile_overlap, metrics=selected(ssim=ssim), source=entry.name)
    fast = FastForward(model, device, FAST, copy_out=False, log=lambda msg: None)
    loops = [Loop("sequential (official-style)", CHALLENGE_ENGINE), Loop("pipelined", CHALLENGE_ENGINE),
             Loop("pipelined + fast path", fast.describe())]
    pipelined = LoopOptions(pipelined=True, decode_workers=decode_workers, write_workers=write_workers)
    for r in range(rounds):
        for i, loop in enumerate(loops):
            loop.out_dir = work / f"loop{i}_round{r}"
            evaluator = Evaluator(model, **common, loop=pipelined if i else LoopOptions(),  # type: ignore[arg-type]
                                  fast=fast if i == 2 else None)
            free_device(device)
            t0 = time.perf_counter()
            loop.result = evaluator.run(split, loop.out_dir / split.name)
            loop.walls.append(time.perf_counter() - t0)
            print(f"  e2e round {r + 1}: {loop.label}: {loop.walls[-1]:.3f} s", flush=True)
    return loops, trained


def identical_images(a: Path, b: Path, names: Sequence[str]) -> int:
    """How many SR PNGs decode to the same pixels in both folders."""
    def same(name: str) -> bool:
        return bool(np.array_equal(read_rgb(a / f"{name}.png"), read_rgb(b / f"{name}.png")))

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(same, names))


# ----------------------------------------------------------------------------------------------- profile


def top_kernels(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, calls: int = 10,
                rows: int = 12) -> list[tuple[str, int, float]]:
    """(kernel, calls, GPU ms per forward) of the kernels taking the most GPU time over ``calls`` forwards."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    fn(x)
    torch.cuda.synchronize()
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn(x)
        torch.cuda.synchronize()
    kernels = []
    for e in prof.key_averages():
        us = getattr(e, "self_device_time_total", None)
        us = getattr(e, "self_cuda_time_total", 0.0) if us is None else us
        if us > 0:
            kernels.append((e.key, e.count // calls, us / 1e3 / calls))
    return sorted(kernels, key=lambda k: -k[2])[:rows]


def profile(entry: Entry, weights: Path | None, device: torch.device, size: tuple[int, int]) -> list[str]:
    """Where the GPU time goes: the challenge path's and the fp16 channels_last eager path's top kernels."""
    if device.type != "cuda":
        return ["## Profile", "", "CUDA only: skipped."]
    model = fresh_model(entry, weights, device, untrained=True)[0]
    x = random_lr(*size, entry.data_range, device)
    lines = ["## Profile: top GPU kernels", "",
             f"{entry.name} at {size[0]}x{size[1]}, torch.profiler (CUDA activity), per forward, mean of 10. Eager paths "
             "only: a CUDA graph's kernels are not broken down. The basis for deciding on fused (Triton) kernels."]
    torch.backends.cudnn.benchmark = False
    fp16 = FastForward(model, device, VARIANTS["fp16-cl-cudnn"], copy_out=False, log=lambda msg: None)
    fp16.prepare(x)
    for label, fn in (("challenge protocol (fp32 eager)", model), (fp16.describe(), fp16)):
        kernels = top_kernels(fn, x)
        total = sum(k[2] for k in kernels)
        lines += ["", f"**{label}** (top {len(kernels)}: {total:.3f} ms per forward)", "",
                  "| kernel | launches per forward | GPU ms per forward |", "|---|---:|---:|"]
        lines += [f"| `{name[:90]}` | {n} | {ms:.4f} |" for name, n, ms in kernels]
    return lines


# ----------------------------------------------------------------------------------------------- report


def _fmt_diff(d: tuple[float, float] | None) -> str:
    return "" if d is None else f"{d[0]:+.4f} / {d[1]:.4f}"


def forward_table(all_rows: Sequence[EntryRows], sizes: Sequence[str], sets: Sequence[str], runs: int) -> list[str]:
    head = ["entry", "variant", "precision / engine"]
    for s in sizes:
        head += [f"{s} [ms]", f"{s} ratio"]
    head += ["setup [s]"] + [f"ΔPSNR {s} mean / max per image [dB]" for s in sets]
    lines = [
        "## Forward: challenge protocol vs fast path",
        "",
        f"Challenge protocol: {CHALLENGE_ENGINE}, `cudnn.benchmark=False`, batch 1. Every time is the "
        f"median of {runs} isolated calls (CUDA events around the call, synchronised after it, as the challenge times "
        "an image; wall clock off CUDA), after the entry's first call at that size (shown as cold). Ratio = time / the challenge protocol's warm "
        "median on the same input (a conservative ratio: the published challenge mean also carries the cold start). "
        "Fast-path variants are timed after `prepare()` (capture / compile / autotune: setup). ΔPSNR = variant − "
        "challenge path, mean over the set and largest per-image |difference|. Input: a random uint8 LR image made "
        "into a tensor as the challenge loop does (`uint8_to_tensor`: its channels_last strides make even the "
        "challenge path's convolutions run NHWC).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|",
    ]
    for er in all_rows:
        name = er.entry.name + ("" if er.trained else " (untrained)")
        ch = er.challenge
        cells = [name, "challenge", ch.engine]
        for s in sizes:
            cells += [f"{ch.ms[s]:.3f} (cold {ch.cold_ms[s]:.1f})", "1.00"]
        cells += [""] + ["" for _ in sets]
        lines.append("| " + " | ".join(cells) + " |")
        for row in er.variants:
            cells = ["", row.label, row.engine + (f" — {row.note}" if row.note else "")]
            for s in sizes:
                ms = row.ms.get(s)
                cells += ["" if ms is None else f"{ms:.3f}", "" if ms is None else f"{ms / ch.ms[s]:.2f}"]
            cells += ["" if row.setup_s is None else f"{row.setup_s:.2f}"]
            cells += [_fmt_diff(row.psnr_diff.get(s)) for s in sets]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def e2e_table(loops: Sequence[Loop], entry: Entry, trained: bool, split: Split, identical: dict[str, int]) -> list[str]:
    seq = loops[0]
    assert seq.result is not None
    lines = [
        "## End to end: validation wall time, SR images saved",
        "",
        f"{entry.name}{'' if trained else ' (untrained)'} on {split.root.name} ({len(split)} images), "
        f"{len(seq.walls)} round(s), loops alternating; files in the page cache and CUDA initialised before the first "
        "loop. Wall = from the first decode to the last PNG on disk (fsync'd). Runtime = the loop's mean per-image "
        "forward time (the faithful pipelined loop must match the sequential one).",
        "",
        "| loop | precision / engine | wall per round [s] | best [s] | speed-up vs sequential | images/s | mean PSNR [dB] "
        "| max abs ΔPSNR vs sequential [dB] | SR PNGs identical to sequential | mean runtime [ms] |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for loop in loops:
        r = loop.result
        assert r is not None
        same_names = r.names == seq.result.names
        diff = max(abs(a - b) for a, b in zip(r.metric("psnr"), seq.result.metric("psnr"))) if same_names else math.nan
        lines.append(
            f"| {loop.label} | {loop.engine} | {', '.join(f'{w:.3f}' for w in loop.walls)} | {loop.best:.3f} "
            f"| {seq.best / loop.best:.2f}x | {len(r.names) / loop.best:.1f} | {r.mean('psnr'):.4f} "
            f"| {diff:.2e}{'' if same_names else ' (names differ!)'} | {identical.get(loop.label, len(r.names))}/{len(r.names)} "
            f"| {statistics.fmean(r.runtime_ms):.3f} |"
        )
    return lines


def targets(all_rows: Sequence[EntryRows], loops: Sequence[Loop] | None, identical: dict[str, int]) -> list[str]:
    lines = ["## Targets", ""]
    for er in all_rows:
        if er.entry.name != "MLRN-entire":
            continue
        if "339x510" not in er.challenge.ms:
            lines.append("- MLRN-entire fast path at 339x510: not measured (pass --sizes 339x510)")
            continue
        ok_rows = [r for r in er.variants if "339x510" in r.ms
                   and all(abs(d[0]) <= TARGET_PSNR_DB for d in r.psnr_diff.values())]
        if ok_rows:
            best = min(ok_rows, key=lambda r: r.ms["339x510"])
            ratio = best.ms["339x510"] / er.challenge.ms["339x510"]
            lines.append(f"- MLRN-entire fast path at 339x510: {ratio:.2f}x the challenge protocol ({best.label}: "
                         f"{best.engine}), PSNR within {TARGET_PSNR_DB} dB on every set — target ≤ {TARGET_RATIO}: "
                         f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}")
        else:
            lines.append(f"- MLRN-entire at 339x510: no variant within {TARGET_PSNR_DB} dB — target NOT met")
    if loops:
        seq, pipe = loops[0], loops[1]
        assert seq.result is not None and pipe.result is not None
        speedup = seq.best / pipe.best
        same = pipe.result.names == seq.result.names and max(
            abs(a - b) for a, b in zip(pipe.result.metric("psnr"), seq.result.metric("psnr"))) <= 1e-3
        lines.append(f"- end to end, pipelined (faithful) vs sequential: {speedup:.2f}x, PSNR "
                     f"{'identical (≤ 0.001 dB)' if same else 'DIFFERENT'}, "
                     f"{identical.get(pipe.label, 0)}/{len(pipe.result.names)} SR PNGs identical — target ≥ "
                     f"{TARGET_SPEEDUP}x: {'met' if speedup >= TARGET_SPEEDUP and same else 'NOT met'}")
    return lines


def render(header: list[str], sections: Sequence[list[str]]) -> str:
    return "\n".join(header + [line for s in sections for line in ["", *s]]) + "\n"


# ----------------------------------------------------------------------------------------------- main


def limited(split: Split, limit: int) -> Split:
    return dataclasses.replace(split, pairs=split.pairs[:limit]) if limit > 0 else split


def run_e2e(args: argparse.Namespace, entries: Sequence[Entry], weights: Sequence[Path | None], device: torch.device,
            split: Split, rounds: int) -> tuple[list[Loop], dict[str, int], list[str]]:
    """The end-to-end comparison: loops, identical-PNG counts, its Markdown section."""
    entry = get_entry(args.e2e_model or args.model_id[0])
    entry_weights = weights[entries.index(entry)] if entry in entries else None
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="esrkit-speed-"))
    print(f"end to end: {entry.name} on {split.root.name} ({len(split)} images)", flush=True)
    identical: dict[str, int] = {}
    try:
        loops, trained = end_to_end(entry, entry_weights, device, split, rounds, args.ssim, work,
                                    args.decode_workers, args.write_workers)
        reference = loops[0]
        assert reference.out_dir is not None and reference.result is not None
        for loop in loops[1:]:
            assert loop.out_dir is not None
            identical[loop.label] = identical_images(reference.out_dir / split.name, loop.out_dir / split.name,
                                                     reference.result.names)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return loops, identical, e2e_table(loops, entry, trained, split, identical)


def run(args: argparse.Namespace) -> str:
    check_writable_file(args.out, "--out")
    device = pick_device(args.device)
    on_cuda = device.type == "cuda"
    sizes = args.sizes or ([(339, 510), (256, 256)] if on_cuda else [(48, 64)])
    runs = args.runs or (50 if on_cuda else 3)
    rounds = args.rounds or (2 if on_cuda else 1)
    entries = [get_entry(m) for m in args.model_id]
    weights = weights_per_entry(args.model_id, args.weights)
    sets = [limited(open_split(d), args.limit) for d in [args.data_dir, *args.psnr_dirs]]
    compile_for = {get_entry(m).name for m in args.compile_for if m.lower() != "none"}
    if not on_cuda and (compile_for or any(v in COMPILE_VARIANTS for v in args.variants)):
        print(f"compile variants skipped on {device.type} (CUDA only in this benchmark)", file=sys.stderr)
        compile_for = set()
    dev = device_name(device)
    print(f"device: {dev}; torch {torch.__version__}", flush=True)
    header = [
        f"# Fast path and pipelined validation on {dev}",
        "",
        f"`python -m benchmarks.speed {' '.join(args.argv)}`".replace(" `", "`"),
        "",
        f"Device: **{dev}** ({device.type}); torch {torch.__version__}; esrkit {__version__}; "
        f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}. "
        f"Sets: {', '.join(f'{s.root.name} ({len(s)} images)' for s in sets)}.",
    ]
    size_keys = [f"{h}x{w}" for h, w in sizes]
    set_keys = [s.root.name for s in sets]
    all_rows: list[EntryRows] = []
    loops: list[Loop] | None = None
    identical: dict[str, int] = {}
    e2e_section: list[list[str]] = []
    profile_section: list[list[str]] = []

    def write(final: bool = False) -> str:
        sections = [forward_table(all_rows, size_keys, set_keys, runs), *e2e_section, *profile_section]
        if final:
            sections.append(targets(all_rows, loops, identical))
        text = render(header, sections)
        atomic_write(args.out, text)
        return text

    # End to end first: it is the cheapest part, and a run cut short by a time limit still has it.
    if not args.no_e2e:
        loops, identical, section = run_e2e(args, entries, weights, device, sets[0], rounds)
        e2e_section.append(section)
        write()
        free_device(device)
    for entry, w in zip(entries, weights):
        print(f"{entry.name}: forward timing", flush=True)
        variants = {k: VARIANTS[k] for k in args.variants if k in VARIANTS}
        if on_cuda:
            variants |= {k: COMPILE_VARIANTS[k] for k in args.variants if k in COMPILE_VARIANTS}
            if entry.name in compile_for:
                variants |= COMPILE_VARIANTS
            variants = {k: dataclasses.replace(v, compile_mode=args.compile_mode) if v.compiled else v
                        for k, v in variants.items()}
        all_rows.append(measure_entry(entry, w, device, sizes, runs, variants, sets))
        write()
        free_device(device)
    if args.profile:
        profile_section.append(profile(entries[0], weights[0], device, sizes[0]))
    text = write(final=True)
    print(text)
    print(f"written to {args.out}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        run(args)
        return 0

    return run_guarded(body, "interrupted")


if __name__ == "__main__":
    sys.exit(main())
