"""``python -m benchmarks``: the efficiency report of entries and teams, placed in Table 3.

    python -m benchmarks                                   # MLRN-entire vs RFDN on this device, Table 3
    python -m benchmarks --model_id MLRN-entire RLFN --weights model_zoo/mlrn_entire_x4.pth W2 \\
        --data_dir DIV2K --markdown report.md --csv report.csv --plot report.png
    python -m benchmarks --spec teams.toml --complexity_only --json counts.json    # teams as their spec says

Every FLOPs column names its counter; every runtime names its device and protocol; a runtime
measured here is set against the published ones only through its ratio to a baseline entry
measured in the same run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from esrkit.cli import exit_now, run_guarded, startup

with startup("no report file was written"):  # torch takes seconds to import: a Ctrl-C meanwhile is one line too
    import torch
    from torch import nn

    from benchmarks.measure import (FIXED_SIZES, Timing, check_loadable, fresh_model, time_fixed_input, time_split,
                                    weights_per_entry)
    from esrkit import spec
    from esrkit.atomic import atomic_write, check_writable_file
    from esrkit.challenge import Convention
    from esrkit.datasets import Split, open_split
    from esrkit.device import device_name, pick_device
    from esrkit.entry import Entry
    from esrkit.errors import KitError
    from esrkit.measure.complexity import Complexity, count
    from esrkit.progress import Progress
    from esrkit.registry import DEFAULT_ENTRY, get_entry
    from esrkit.results import model_keys, split_keys

if TYPE_CHECKING:  # pandas, the Table 3 ranking and rendering are imported only where a report needs them
    import pandas as pd

DEFAULT_BASELINE = "RFDN"  # the NTIRE 2023 baseline


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_id", nargs="+", default=None,
                   help=f"entries by name or id (default: {DEFAULT_ENTRY} when no team is given)")
    p.add_argument("--weights", nargs="+", type=Path, default=None,
                   help="weights files, one per --model_id in order, then one for --model_file (default: each "
                        "entry's model_zoo file; missing weights are an error, see --untrained)")
    p.add_argument("--untrained", action="store_true",
                   help="count and time the kit's registered entries that have no weights file, untrained (said in "
                        "every table); a team's file is never counted without its weights")
    spec.add_team_arguments(p)
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
                   help="only the complexity table (no timing, no Table 3): needs no GPU")
    p.add_argument("--published", type=Path, default=None, help="published Table 3 CSV (default: ../shared/reference)")
    for fmt in OUTPUTS:
        p.add_argument(f"--{fmt}", type=Path, default=None, help=f"write the report as {fmt} to this path")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


OUTPUTS = ("csv", "markdown", "latex", "json", "plot", "html")


def entries_from_args(args: argparse.Namespace) -> list[tuple[Entry, Path | None]]:
    """The registered entries (``--model_id``), then the teams (``--spec``, or one ``--model_file``), each with
    its weights (None: the entry's own file)."""
    teams: list[spec.TeamSpec] = []
    if args.spec is not None:
        flags = [f for f in spec.given_team_flags(args) if f != "--team"]
        if flags or args.model_file is not None:
            raise KitError(f"{', '.join(flags or ['--model_file'])}: with --spec the teams come from the file; drop them")
        spec_file = spec.load_spec_file(args.spec)
        teams = list(spec_file.teams) if args.team is None else [spec_file.select(args.team)]
    model_ids = args.model_id if args.model_id is not None else ([] if teams or args.model_file else [DEFAULT_ENTRY])
    weights = args.weights
    team_weights = None
    if args.model_file is not None:
        if weights is not None and len(weights) == len(model_ids) + 1:
            weights, team_weights = weights[:-1], weights[-1]
        teams.append(spec.spec_from_flags(args, weights=team_weights))
    if weights and not model_ids:
        raise KitError("--weights without --model_id: a team's weights come from its spec or --model_file's model_zoo/")
    chosen = [(get_entry(m), w) for m, w in zip(model_ids, weights_per_entry(model_ids, weights))]
    return chosen + [(spec.resolve(t), None) for t in teams]


def complexity_markdown(rows: list[tuple[Entry, bool, Complexity]]) -> str:
    lines = ["## Complexity (3x256x256 LR input; FLOPs are multiply-adds under each counter's rules)", "",
             "| Entry | Weights | #Params | FLOPs [G] official hook counter (2022-23, Table 3) | FLOPs [G] fvcore (2024-25) "
             "| MACs [G] ptflops (pytorch backend) | #Acts [M] | #Conv | fvcore skipped ops (counted 0) |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|:---|"]
    notes = []
    for entry, trained, c in rows:
        skipped = ", ".join(f"{k.removeprefix('aten::')}×{v}" for k, v in sorted(c.fvcore_unsupported.items())) or "none"
        lines.append(f"| {entry.display_name} | {'trained' if trained else 'untrained (counted only)'} | {c.params:,} | "
                     f"{c.flops_official / 1e9:.2f} | {_giga(c.flops_fvcore)} | {_giga(c.flops_ptflops)} | "
                     f"{c.activations / 1e6:.2f} | {c.num_conv} | {skipped} |")
        notes += [f"- {entry.display_name}: {why}" for why in c.errors.values()]
        if c.varies:
            notes.append(f"- {entry.display_name}: {c.probe_note()}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _giga(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f}"


def complexity_frame(rows: list[tuple[Entry, bool, Complexity]]) -> "pd.DataFrame":
    """The complexity table as exact integers, one row per entry (for --csv / --json)."""
    import pandas as pd

    return pd.DataFrame([
        {"entry": entry.display_name, "trained": trained, "params": c.params, "flops_official": c.flops_official,
         "flops_fvcore": c.flops_fvcore, "macs_ptflops": c.flops_ptflops, "activations": c.activations,
         "num_conv": c.num_conv,
         "fvcore_skipped_ops": ";".join(f"{k}={v}" for k, v in sorted(c.fvcore_unsupported.items())),
         "input_dependent": ";".join(f"{k}={a}/{b}" for k, (a, b) in c.varies.items()) or "none"}
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
        ratio = f"{ratios[entry.display_name]:.2f}×" if entry.display_name in ratios else "—"
        lines.append(f"| {entry.display_name} | {t.input} | {t.challenge_ms:.2f} | {t.cold_ms:.2f} | "
                     f"{t.robust_median_ms:.2f} ({t.robust_iqr_ms:.2f}) | {peak} | {chal} | {ratio} |")
    if device.startswith("CPU"):
        lines += ["", "CPU run: wall-clock timing, no GPU memory; not comparable with the published GPU runtimes."]
    return "\n".join(lines) + "\n"


def check_args(args: argparse.Namespace) -> None:
    """The numbers given make sense, the flags go together, and every report path can be written -- before anything
    is measured (the entries and their weights are checked next: :func:`benchmarks.measure.check_loadable`)."""
    if args.repeats < 1:
        raise KitError(f"--repeats {args.repeats}: give the challenge-protocol forwards per input (1 or more)")
    if not args.min_run_time > 0:
        raise KitError(f"--min_run_time {args.min_run_time:g}: give the seconds of the robust protocol (more than 0)")
    if args.html is not None and args.data_dir is None:
        raise KitError("--html shows a validation run (per-image PSNR against the baseline's): give --data_dir")
    if args.baseline_weights is not None and (args.complexity_only or args.baseline.lower() == "none"):
        why = "--complexity_only times no baseline" if args.complexity_only else "--baseline none skips the baseline"
        raise KitError(f"--baseline_weights {args.baseline_weights}: {why}; drop --baseline_weights")
    if args.complexity_only and args.data_dir is not None:
        raise KitError(f"--data_dir {args.data_dir}: --complexity_only times nothing on it; drop --data_dir or "
                       f"--complexity_only")
    if args.complexity_only:
        unsupported = [f"--{fmt}" for fmt in ("latex", "plot", "html") if getattr(args, fmt) is not None]
        if unsupported:
            raise KitError(f"{' and '.join(unsupported)}: Table 3 outputs, which --complexity_only does not build; "
                           f"drop {'them' if len(unsupported) > 1 else 'it'} or --complexity_only "
                           f"(--markdown, --csv and --json work with it)")
    for fmt in OUTPUTS:
        if getattr(args, fmt) is not None:
            check_writable_file(getattr(args, fmt), f"--{fmt}")


def measured(entries: list[tuple[Entry, Path | None]], device: torch.device, progress: Progress,
             timed: Callable[[nn.Module, Entry, bool], list[Timing]] | None, untrained: bool = False,
             flags: dict[str, str] | None = None) -> list[tuple[Entry, bool, Complexity, list[Timing]]]:
    """Per entry (a fresh model each, the previous one freed): its counts and, with ``timed``, its timings.

    The model is counted on the CPU, in place, before it moves to ``device``: counting warms no GPU that is
    timed afterwards, and needs no copy."""
    cpu = torch.device("cpu")
    rows = []
    with progress.bar(len(entries), "entries", unit="entry") as bar:
        for entry, weights in entries:
            bar.status(entry.display_name)
            with entry.running_on(device):
                flag = (flags or {}).get(entry.display_name, "--weights")  # the option giving its weights
                model, trained = fresh_model(entry, weights, cpu, untrained, flag)  # prepared (eval, no grads), CPU
                with entry.running_on(cpu):
                    complexity = count(model)  # leaves the model exactly as it was
                model = model.to(device)
                rows.append((entry, trained, complexity, timed(model, entry, trained) if timed else []))
            del model
            bar.advance(entry.display_name)
    return rows


def psnr_set(split: Split) -> str:
    """What a measured PSNR was measured on, as Table 3 shows it (its own column's set: DIV2K valid)."""
    from benchmarks.table3 import PUBLISHED_PSNR_SET

    if split.layout == "ntire2023" and split.name == "valid" and len(split) == 100:
        return PUBLISHED_PSNR_SET
    return f"{split.root.name} ({split.layout} layout, {split.name} {len(split)} images)"


def page_entries(rows: list[tuple[Entry, bool, Complexity, list[Timing]]], device: torch.device
                 ) -> dict[str, dict[str, Any]]:
    """The measured entries as results.json entries (the kit's own convention), for the results page."""
    convention = Convention.for_run(None, "benchmark")
    entries = {}
    for entry, _, c, timings in rows:
        record = timings[-1].record
        assert record is not None  # --html needs --data_dir
        entries[entry.display_name] = {
            **split_keys(record), **model_keys(c, convention), "device": device_name(device), "device_type": device.type,
            "memory_measured": device.type == "cuda", "results_convention": convention.label, "entry": entry.call_text(),
        }
    return entries


def baseline_of(args: argparse.Namespace, entries: list[tuple[Entry, Path | None]]) -> Entry | None:
    """The ``--baseline`` entry, added to ``entries`` (with ``--baseline_weights``) unless it is one of them."""
    if args.baseline.lower() == "none":
        return None
    baseline = get_entry(args.baseline)
    if baseline.name not in {e.name for e, _ in entries if e.source is None}:
        entries.append((baseline, args.baseline_weights))
    elif args.baseline_weights is not None:
        raise KitError(f"--baseline_weights {args.baseline_weights}: the baseline {baseline.name} is a --model_id "
                       f"entry too, measured with its --weights; drop --baseline_weights")
    return baseline


def run(args: argparse.Namespace) -> str:
    """Every input is checked (the flags, the report paths, the entries, the data, every weights file) before
    anything is measured."""
    check_args(args)
    entries = entries_from_args(args)
    progress = Progress(enabled=False if args.quiet else None)
    return complexity_report(args, entries, progress) if args.complexity_only else full_report(args, entries, progress)


def complexity_report(args: argparse.Namespace, entries: list[tuple[Entry, Path | None]], progress: Progress) -> str:
    check_loadable(entries, args.untrained)
    rows = [(e, trained, c) for e, trained, c, _ in measured(entries, torch.device("cpu"), progress, None,
                                                             args.untrained)]
    report = complexity_markdown(rows)
    if args.markdown:
        atomic_write(args.markdown, report)
    table = complexity_frame(rows)
    if args.csv:
        atomic_write(args.csv, table.to_csv(index=False, lineterminator="\n"))
    if args.json:
        atomic_write(args.json, table.to_json(orient="records", indent=2) + "\n")
    return report


def full_report(args: argparse.Namespace, entries: list[tuple[Entry, Path | None]], progress: Progress) -> str:
    from benchmarks import render, table3

    baseline = baseline_of(args, entries)
    published = table3.load_published(args.published)
    device = pick_device(args.device)
    split = open_split(args.data_dir) if args.data_dir is not None else None
    flags = {baseline.display_name: "--baseline_weights"} if baseline is not None else {}
    check_loadable(entries, args.untrained, flags)  # every weights file, the baseline's too
    dev_name = device_name(device)
    torch.backends.cudnn.benchmark = False

    def timed(model: nn.Module, entry: Entry, trained: bool) -> list[Timing]:
        if split is not None:
            return [time_split(model, entry, split, device, args.repeats, trained)]
        return [time_fixed_input(model, entry, FIXED_SIZES[size], device, args.repeats, args.min_run_time)
                for size in args.sizes]

    rows = measured(entries, device, progress, timed, args.untrained, flags)
    main_timing = {e.display_name: ts[-1] for e, _, _, ts in rows}  # the split, or the last fixed size
    ratios = {}
    if baseline is not None:
        base_ms = main_timing[baseline.display_name].challenge_ms
        ratios = {name: t.challenge_ms / base_ms for name, t in main_timing.items()}

    table_rows = []
    for entry, trained, c, _ in rows:
        t = main_timing[entry.display_name]
        mem = t.challenge_mem_mib if split is not None else t.peak_mib
        table_rows.append(table3.MeasuredRow(
            team=entry.display_name, time_val=t.challenge_ms, psnr_val=t.psnr,
            params_M=c.params / 1e6, flops_G=c.flops_official / 1e9, acts_M=c.activations / 1e6, mem_M=mem,
            num_conv=c.num_conv, device=dev_name,
            note=f"runtime: challenge protocol on {t.input}" + ("" if trained else "; untrained weights"),
            time_ratio_to_baseline=ratios.get(entry.display_name) if baseline is not None else None,
            baseline=baseline.name if baseline is not None else "",
            psnr_set=psnr_set(split) if split is not None else table3.PUBLISHED_PSNR_SET,
            timed_on_gpu=device.type == "cuda",
        ))
    df = table3.rerank(table3.merge(published, table_rows))
    notes = df.attrs.get(table3.NOTES_KEY, [])
    timings = [(e, t) for e, _, _, ts in rows for t in ts]
    parts = [complexity_markdown([(e, trained, c) for e, trained, c, _ in rows]),
             runtime_markdown(timings, dev_name, ratios, baseline and baseline.name), render.to_markdown(df, notes)]
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
    if args.html:
        from esrkit.results_page import write_results_page

        write_results_page(args.html, page_entries(rows, device), baseline_key=baseline and baseline.display_name,
                           title=f"Efficiency report: {', '.join(e.display_name for e, *_ in rows)} on {dev_name}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        print(run(args))
        return 0

    return run_guarded(body, "each report file is either complete or as it was")


if __name__ == "__main__":
    exit_now(main())
