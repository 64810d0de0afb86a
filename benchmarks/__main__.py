"""``python -m benchmarks``: the efficiency report of registered entries, placed in Table 3.

    python -m benchmarks                                   # MLRN-entire vs RFDN on this device, Table 3
    python -m benchmarks --model_id MLRN-entire RLFN --weights model_zoo/mlrn_entire_x4.pth W2 \\
        --data_dir DIV2K --markdown report.md --csv report.csv --plot report.png

Every FLOPs column names its counter; every runtime names its device and protocol; a runtime
measured here is set against the published ones only through its ratio to a baseline entry
measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from tqdm import tqdm

from benchmarks import render, table3
from benchmarks.measure import (FIXED_SIZES, Complexity, Timing, fresh_model, measure_complexity, time_fixed_input,
                                time_split, weights_per_entry)
from esrkit.atomic import atomic_write
from esrkit.datasets import open_split
from esrkit.cli import run_guarded
from esrkit.errors import KitError
from esrkit.registry import DEFAULT_ENTRY, Entry, get_entry
from esrkit.runner import device_name, pick_device

DEFAULT_BASELINE = "RFDN"  # the NTIRE 2023 baseline


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_id", nargs="+", default=[DEFAULT_ENTRY], help="entries by name or id")
    p.add_argument("--weights", nargs="+", type=Path, default=None,
                   help="weights files, one per --model_id in order (default: each entry's model_zoo file; "
                        "an entry without weights is still counted and timed, and said to be untrained)")
    p.add_argument("--baseline", default=DEFAULT_BASELINE,
                   help=f"entry timed in the same run for the same-machine runtime ratio (default {DEFAULT_BASELINE}); "
                        "'none' to skip")
    p.add_argument("--baseline_weights", type=Path, default=None, help="weights of the baseline (PSNR only)")
    p.add_argument("--data_dir", type=Path, default=None,
                   help="validation folder: the runtime and memory come from its images (challenge protocol) "
                        "instead of the fixed-size inputs")
    p.add_argument("--sizes", nargs="+", default=["339x510"], choices=list(FIXED_SIZES),
                   help="fixed LR input sizes timed when there is no --data_dir (default 339x510, DIV2K-sized)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu")
    p.add_argument("--repeats", type=int, default=5, help="challenge-protocol forwards per fixed input / warm repeats per image")
    p.add_argument("--min_run_time", type=float, default=1.0, help="seconds of the robust protocol per input")
    p.add_argument("--complexity_only", action="store_true",
                   help="only the complexity table (no timing, no Table 3): needs no GPU and no weights")
    p.add_argument("--published", type=Path, default=None, help="published Table 3 CSV (default: ../shared/reference)")
    for fmt in ("csv", "markdown", "latex", "json", "plot"):
        p.add_argument(f"--{fmt}", type=Path, default=None, help=f"write the report as {fmt} to this path")
    return p.parse_args(argv)


def complexity_markdown(rows: list[tuple[Entry, bool, Complexity]]) -> str:
    lines = ["## Complexity (3x256x256 LR input; FLOPs are multiply-adds under each counter's rules)", "",
             "| Entry | Weights | #Params | FLOPs [G] official hook counter (2022-23, Table 3) | FLOPs [G] fvcore (2024-25) "
             "| MACs [G] ptflops (pytorch backend) | #Acts [M] | #Conv | fvcore skipped ops (counted 0) |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|:---|"]
    for entry, trained, c in rows:
        skipped = ", ".join(f"{k.removeprefix('aten::')}×{v}" for k, v in sorted(c.fvcore_unsupported.items())) or "none"
        lines.append(f"| {entry.name} | {'trained' if trained else 'untrained (counted only)'} | {c.params:,} | "
                     f"{c.flops_official / 1e9:.2f} | {c.flops_fvcore / 1e9:.2f} | {c.flops_ptflops / 1e9:.2f} | "
                     f"{c.activations / 1e6:.2f} | {c.num_conv} | {skipped} |")
    return "\n".join(lines) + "\n"


def complexity_frame(rows: list[tuple[Entry, bool, Complexity]]) -> pd.DataFrame:
    """The complexity table as exact integers, one row per entry (for --csv / --json)."""
    return pd.DataFrame([
        {"entry": entry.name, "trained": trained, "params": c.params, "flops_official": c.flops_official,
         "flops_fvcore": c.flops_fvcore, "macs_ptflops": c.flops_ptflops, "activations": c.activations,
         "num_conv": c.num_conv,
         "fvcore_skipped_ops": ";".join(f"{k}={v}" for k, v in sorted(c.fvcore_unsupported.items()))}
        for entry, trained, c in rows
    ])


def runtime_markdown(timings: list[tuple[Entry, Timing]], device: str, ratios: dict[str, float], baseline: str | None) -> str:
    mem = "peak mem [MiB] (reset per entry and input)"
    lines = [f"## Runtime and memory on {device}", "",
             f"| Entry | Input | Challenge protocol [ms] (mean, no warm-up) | Cold first forward [ms] | "
             f"Robust median [ms] (IQR) | {mem} | Challenge mem [MiB] | ÷ {baseline or 'baseline'} (same run) |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|"]
    for entry, t in timings:
        peak = "—" if t.peak_mib is None else f"{t.peak_mib:.2f}"
        chal = "—" if t.challenge_mem_mib is None else f"{t.challenge_mem_mib:.2f}"
        ratio = f"{ratios[entry.name]:.2f}×" if entry.name in ratios else "—"
        lines.append(f"| {entry.name} | {t.input} | {t.challenge_ms:.2f} | {t.cold_ms:.2f} | "
                     f"{t.robust_median_ms:.2f} ({t.robust_iqr_ms:.2f}) | {peak} | {chal} | {ratio} |")
    if device.startswith("CPU"):
        lines += ["", "CPU run: wall-clock timing, no GPU memory; not comparable with the published GPU runtimes."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> str:
    entries = [get_entry(m) for m in args.model_id]
    weights = dict(zip((e.name for e in entries), weights_per_entry(args.model_id, args.weights)))
    if args.complexity_only:
        unsupported = [f"--{fmt}" for fmt in ("latex", "plot") if getattr(args, fmt) is not None]
        if unsupported:
            raise KitError(f"{' and '.join(unsupported)}: Table 3 outputs, which --complexity_only does not build; "
                           f"drop {'them' if len(unsupported) > 1 else 'it'} or --complexity_only "
                           f"(--markdown, --csv and --json work with it)")
        rows = []
        for entry in entries:
            model, trained = fresh_model(entry, weights[entry.name], torch.device("cpu"))
            rows.append((entry, trained, measure_complexity(model)))
        report = complexity_markdown(rows)
        if args.markdown:
            atomic_write(args.markdown, report)
        table = complexity_frame(rows)
        if args.csv:
            atomic_write(args.csv, table.to_csv(index=False, lineterminator="\n"))
        if args.json:
            atomic_write(args.json, table.to_json(orient="records", indent=2) + "\n")
        return report
    baseline = None if args.baseline.lower() == "none" else get_entry(args.baseline)
    if baseline is not None and baseline.name not in weights:
        entries.append(baseline)
        weights[baseline.name] = args.baseline_weights
    published = table3.load_published(args.published)
    device = pick_device(args.device)
    dev_name = device_name(device)
    split = open_split(args.data_dir) if args.data_dir is not None else None
    torch.backends.cudnn.benchmark = False

    complexities: list[tuple[Entry, bool, Complexity]] = []
    timings: list[tuple[Entry, Timing]] = []
    main_timing: dict[str, Timing] = {}
    bar = tqdm(entries, desc="entries", unit="entry", file=sys.stderr)
    for entry in bar:
        bar.set_postfix_str(entry.name)
        model, trained = fresh_model(entry, weights[entry.name], device)
        complexities.append((entry, trained, measure_complexity(model)))
        if split is not None:
            t = time_split(model, entry, split, device, args.repeats, trained)
            timings.append((entry, t))
        else:
            for size in args.sizes:
                t = time_fixed_input(model, FIXED_SIZES[size], device, args.repeats, args.min_run_time)
                timings.append((entry, t))
        main_timing[entry.name] = timings[-1][1] if split is not None else next(
            t for e, t in timings if e is entry and t.input == args.sizes[-1])
        del model
    ratios = {}
    if baseline is not None:
        base_ms = main_timing[baseline.name].challenge_ms
        ratios = {name: t.challenge_ms / base_ms for name, t in main_timing.items()}

    rows = []
    for entry, trained, c in complexities:
        t = main_timing[entry.name]
        mem = t.challenge_mem_mib if split is not None else t.peak_mib
        rows.append(table3.MeasuredRow(
            team=entry.name, time_val=t.challenge_ms, psnr_val=t.psnr, params_M=c.params / 1e6,
            flops_G=c.flops_official / 1e9, acts_M=c.activations / 1e6, mem_M=mem, num_conv=c.num_conv,
            device=dev_name, note=f"runtime: challenge protocol on {t.input}" + ("" if trained else "; untrained weights"),
            time_ratio_to_baseline=ratios.get(entry.name) if baseline is not None else None,
            baseline=baseline.name if baseline is not None else "",
        ))
    df = table3.rerank(table3.merge(published, rows))
    notes = df.attrs.get(table3.NOTES_KEY, [])
    parts = [complexity_markdown(complexities), runtime_markdown(timings, dev_name, ratios, baseline and baseline.name),
             render.to_markdown(df, notes)]
    if baseline is not None:
        parts.append(render.score_to_markdown(table3.score_2024(df, baseline.name)))
    report = "\n".join(parts)
    if args.markdown:
        atomic_write(args.markdown, report)
    if args.csv:
        render.to_csv(df, args.csv)
    if args.latex:
        atomic_write(args.latex, render.to_latex(df, notes))
    if args.json:
        render.to_json(df, args.json, notes)
    if args.plot:
        render.plot(df, args.plot)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        print(run(args))
        return 0

    return run_guarded(body, "interrupted: no report file was changed")


if __name__ == "__main__":
    sys.exit(main())
