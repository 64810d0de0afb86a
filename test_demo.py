"""Challenge-format evaluation of one entry (the NTIRE Efficient SR ``test_demo.py``, faithfully).

    python test_demo.py                                   # MLRN-entire on the embedded demo photos
    python test_demo.py --data_dir DIR --model_id RFDN --weights team00_rfdn.pth [--include_test] [--ssim]
    python test_demo.py --data_dir DIR --model_file models/team07_NanoSR.py --class_name NanoSR_inference \\
        --init_args '[3, 3]' --data_range 1.0            # a team's file, built as its instructions say
    python test_demo.py --data_dir DIR --spec teams.toml --team 17       # ... or as a spec file says
    python test_demo.py --data_dir DIR --pipeline --fast      # + pipelined loop, + fast-path figures beside

Writes ``results.json`` / ``results.txt`` (official format, merged with existing entries) in
``--results_dir`` (default: the current folder, as the official kit) and the SR images under
``--save_dir/<key>/<split>/``. See README.md for every flag and where each number comes from.
"""

from __future__ import annotations

import argparse
import json
import sys
from statistics import median
from pathlib import Path
from typing import Any, Sequence

from esrkit.cli import exit_now, run_guarded, startup

with startup():  # torch and the kit take seconds to import: a Ctrl-C meanwhile is one line too
    from esrkit.atomic import check_writable_folder
    from esrkit.challenge import Convention
    from esrkit.datasets import LAYOUTS, Split, demo_split, open_splits
    from esrkit.device import device_name, pick_device
    from esrkit.errors import KitError
    from esrkit.evaluation import AUTO, OOM_FALLBACK_TILE, LoopOptions
    from esrkit.fastpath import ENGINES, PRECISIONS, options_from_flags
    from esrkit.metrics import METRICS
    from esrkit.names import child_folder
    from esrkit.outputs import DataIdentity, sr_folder_problem
    from esrkit.progress import Progress, run_log
    from esrkit.registry import DEFAULT_ENTRY, list_entries
    from esrkit.results import ResultsFiles, entry_record, psnr_differences
    from esrkit.measure.timing import mean
    from esrkit.run import EntryRun, RunOptions, run_entry
    from esrkit.spec import YEARS, add_entry_arguments, entry_from_args


GPU_WARM_RUNS = 3  # --runs by default on a GPU (elsewhere 0: a CPU runtime ranks nothing)


def _count_or_all(text: str) -> int | str | None:
    """``all`` (None), ``auto``, or a positive number of images."""
    if text.strip().lower() == "all":
        return None
    if text.strip().lower() == AUTO:
        return AUTO
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of images (>= 1) or 'all'")
    return int(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, default=None,
                   help="dataset folder (NTIRE 2023 / 2024-2025 / benchmark layout, or a folder of HR images); "
                        "default: the embedded demo photos")
    p.add_argument("--save_dir", type=Path, default=Path("results"), help="where SR images go (default: results/)")
    p.add_argument("--results_dir", type=Path, default=Path("."),
                   help="where results.json / results.txt are merged (default: the current folder)")
    add_entry_arguments(p, DEFAULT_ENTRY)
    p.add_argument("--include_test", action="store_true", help="also run the test split")
    p.add_argument("--hybrid_test", action="store_true", help="NTIRE 2023 hybrid LSDIR+DIV2K test only (skips valid)")
    p.add_argument("--ssim", action="store_true", help="also compute SSIM (RGB and Y)")
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS], help="force a dataset layout")
    p.add_argument("--lr_only", action="store_true",
                   help="the LR images alone (e.g. the 2024/2025 test phase; with --layout folder, a folder of LR "
                        "images): runtimes and SR images, no PSNR")
    p.add_argument("--year", type=int, default=None, choices=YEARS,
                   help="write results as that year's organisers did (FLOPs counter under 'flops', NN_Name keys, "
                        "_baseline); default: the data layout's years, else the kit's own (Table 3) convention")
    p.add_argument("--tile", type=int, default=None, help="tile size in LR pixels (default: the entry's; none = whole image)")
    p.add_argument("--tile_overlap", type=int, default=None, help="tile overlap in LR pixels (default: the entry's, 32)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu")
    p.add_argument("--runs", type=int, default=None,
                   help="warm timing beside the challenge figure: N timed repeats per image after one warm-up, "
                        f"median (0 turns it off); default {GPU_WARM_RUNS} on a GPU, 0 elsewhere: a CPU runtime ranks "
                        "nothing, so there the extra figure is not worth a fifth of the run's time")
    p.add_argument("--warm_images", type=_count_or_all, default=AUTO,
                   help="how many images (spread over the split) get the warm timing: a number, 'all', or 'auto' "
                        "(default: a tenth of the split, 1 to 10 images -- the extra figure then costs a fraction of "
                        "the challenge pass, not several times it)")
    p.add_argument("--no_save", action="store_true", help="do not write SR images")
    p.add_argument("--replace", action="store_true",
                   help="replace the entry in results.json and its SR folder even if they were measured on other data "
                        "(without it, a run on other data stops before any work and says so)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list the registered entries and exit")
    fast = p.add_argument_group("beside the challenge figures (never instead of them)")
    fast.add_argument("--pipeline", action="store_true",
                      help="pipelined loop: decoding ahead, metrics on the GPU, PNGs written in the background; "
                           "the same results, timed the same way (faithful)")
    fast.add_argument("--fast", action="store_true",
                      help="also run the fast path (fp16, channels_last, cuDNN autotuning, CUDA graphs; on CPU: fp32 "
                           "eager) and report it under valid_fast_* keys")
    fast.add_argument("--precision", choices=list(PRECISIONS), default=None,
                      help="fast-path precision (default fp16 with --fast, else fp32); implies a fast pass")
    fast.add_argument("--engine", choices=list(ENGINES), default=None,
                      help="fast-path engine (default graphs with --fast, else eager); implies a fast pass")
    fast.add_argument("--compile_mode", default=None,
                      help="torch.compile mode (default \"default\"); implies a fast pass with a compiled engine")
    return p.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    if args.tile is not None and args.tile < 16:
        raise KitError(f"--tile {args.tile} is too small: give a tile of at least 16 LR pixels, or leave it out")
    if args.tile_overlap is not None and not (0 <= args.tile_overlap < (args.tile or 10**9)):
        raise KitError(f"--tile_overlap {args.tile_overlap} must be >= 0 and smaller than the tile")
    if args.runs is not None and args.runs < 0:
        raise KitError(f"--runs {args.runs}: give the number of warm repeats per image (0 turns the warm pass off)")
    if args.hybrid_test and args.include_test:
        raise KitError("--hybrid_test runs the hybrid test split alone (as the 2023 kit): drop --include_test")
    if args.lr_only and args.data_dir is None:
        raise KitError("--lr_only needs --data_dir (the demo set is made from HR photos)")


def resolve_splits(args: argparse.Namespace, scale: int) -> list[Split]:
    if args.data_dir is None:
        if args.include_test or args.hybrid_test:
            raise KitError("--include_test / --hybrid_test need --data_dir with a test split")
        return [demo_split()]
    names = ["hybrid_test"] if args.hybrid_test else ["valid"] + (["test"] if args.include_test else [])
    return open_splits(args.data_dir, names, args.layout, scale, lr_only=args.lr_only)


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_options(args)
    entry, spec_year = entry_from_args(args, DEFAULT_ENTRY)
    tile = args.tile or entry.tile or OOM_FALLBACK_TILE  # the fallback tiles take the overlap too
    if args.tile_overlap is not None and args.tile_overlap >= tile:
        raise KitError(f"--tile_overlap {args.tile_overlap} must be smaller than the tile ({tile} LR pixels)")
    splits = resolve_splits(args, entry.scale)
    convention = Convention.for_run(args.year or spec_year, splits[0].layout)
    key = convention.key(entry)
    identity = DataIdentity.of(splits)
    files = ResultsFiles(args.results_dir, args.include_test, args.hybrid_test)
    # A results.json that cannot be merged, or whose entry was measured on other data, stops the run now.
    files.preflight(key, identity, replace=args.replace)
    save_dir = None if args.no_save else check_writable_folder(args.save_dir, "--save_dir")
    save_root = None if save_dir is None else child_folder(save_dir, key, "--save_dir")
    problem = None if save_root is None else sr_folder_problem(save_root, identity, splits, args.replace)
    if problem:
        raise KitError(problem)
    device = pick_device(args.device)
    log = run_log(args.results_dir)
    log.info(f"run: {' '.join(sys.argv)}  | {key} on {identity.describe()}, {device_name(device)}")
    pipelined = args.pipeline and device.type != "cpu"
    if args.pipeline and not pipelined:
        print("note: --pipeline runs the sequential loop on a CPU: its decoding and writing threads would take the "
              "cores the forward pass uses, so it cannot be faster there (it is on a GPU)")
    runs = args.runs if args.runs is not None else GPU_WARM_RUNS if device.type == "cuda" else 0
    if args.runs is None and runs == 0:
        print(f"note: no warm timing on the {device.type.upper()} by default (its runtimes rank nothing); --runs "
              f"{GPU_WARM_RUNS} adds it")
    options = RunOptions(device, ssim=args.ssim, warm_runs=runs, warm_images=args.warm_images,
                         loop=LoopOptions(pipelined=pipelined),
                         tile=args.tile, tile_overlap=args.tile_overlap,
                         fast=options_from_flags(args.fast, args.precision, args.engine, args.compile_mode),
                         progress=Progress(enabled=False if args.quiet else None, log=log))
    if splits[0].layout == "demo":
        print("Demo set: scikit-image sample photos with LR made by the kit's MATLAB-bicubic imresize. "
              "This is NOT DIV2K: the PSNR is not comparable to challenge figures.")
    print(f"{key} on {device_name(device)} ({device.type}), data range {entry.data_range:g}, {entry.call_text()}")
    merged: dict[str, Any] = {}

    def write_results(run: EntryRun) -> None:  # before the SR images are moved in: both, or neither
        merged.update(entry_record(run))
        try:
            files.merge({key: merged}, identity, replace=args.replace)
        except KitError:  # a full disk at the end: what was measured is printed, not lost
            print_summary(run)
            print(f"\nThe {key} entry that could not be written (JSON):\n{json.dumps({key: merged}, indent=1)}")
            raise

    result = run_entry(entry, splits, convention, options, args.weights, save_root, finish=write_results)
    print_summary(result)
    for r in result.records:
        psnr = f"PSNR {r.mean('psnr'):.4f} dB, " if r.has_metrics else ""
        log.info(f"{key} {r.split}: {len(r.images)} images, {psnr}runtime {r.mean_runtime_ms:.2f} ms (challenge mean)")
    log.info(f"{key} written to {files.json_path}")
    return merged


def print_summary(run: EntryRun) -> None:
    """The Table 3 style row, then the extras beside it (all from the run's records)."""
    first, c = run.records[0], run.complexity
    print("\nTeam/entry            Time [ms]   PSNR [dB]   #Params [M]  FLOPs [G]  #Acts [M]  GPU Mem [M]  #Conv")
    psnr = f"{first.mean('psnr'):.2f}" if first.has_metrics else "-"
    memory = "-" if first.memory_mib is None else f"{first.memory_mib:.2f}"
    flops = "-" if run.flops is None else f"{run.flops / 1e9:.2f}"
    print(f"{run.key:20s}  {first.mean_runtime_ms:9.2f}   {psnr:>9s}   {c.params / 1e6:11.3f}  {flops:>9s}  "
          f"{c.activations / 1e6:9.2f}  {memory:>11s}  {c.num_conv:5d}")
    for r in run.records:
        extras = [] if r.has_metrics else ["LR only: no PSNR (no HR images)"]
        extras += [f"{METRICS[m].label} {r.mean(m):{METRICS[m].fmt}}" + (" dB" if "psnr" in m else "")
                   for m in r.metric_names if m != "psnr" and r.has_metrics]
        extras.append(f"cold first forward {r.runtime_ms[0]:.2f} ms")
        warm = r.warm_runtime_ms
        if warm:
            which = "" if len(warm) == len(r.images) else f" of {len(warm)} of the {len(r.images)} images, spread evenly"
            extras.append(f"warm {mean(warm):.2f} ms (mean of per-image medians{which}; their median "
                          f"{median(warm):.2f} ms)")
        if r.tiled:
            extras.append(f"{len(r.tiled)} image(s) tiled")
        print(f"  {r.split} ({len(r.images)} images, {r.loop} loop, {r.wall_s:.1f} s): " + "; ".join(extras))
    for r, ref in zip(run.fast, run.records):
        # Against the challenge pass's steady state (warm medians, else all but the cold first image).
        steady = mean(ref.warm_runtime_ms or ref.runtime_ms[1:] or ref.runtime_ms)
        psnr_text = "no PSNR (LR only)"
        if r.has_metrics:
            mean_diff, max_diff = psnr_differences(r, ref)
            psnr_text = f"PSNR {r.mean('psnr'):.4f} dB (mean diff {mean_diff:+.4f}, max per image {max_diff:.4f})"
        print(f"  {r.split} [{r.engine}]: {r.mean_runtime_ms:.2f} ms ({r.mean_runtime_ms / steady:.2f}x the challenge "
              f"pass's steady {steady:.2f} ms), {psnr_text}; wall {r.wall_s:.2f} s vs {ref.wall_s:.2f} s")
    fvcore = "n/a" if c.flops_fvcore is None else f"{c.flops_fvcore / 1e9:.2f}"
    print(f"  FLOPs [G, MACs on 3x256x256]: {c.flops_official / 1e9:.2f} official hook counter (2022-2023, Table 3); "
          f"{fvcore} fvcore (2024-2025); 'flops' holds the {run.convention.counter_label} ({run.convention.label})")
    if c.varies:
        print(f"  complexity: {c.probe_note()}")
    print(f"  weights: {run.loaded.describe()}")
    print(f"  device: {device_name(run.device)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        if args.list:
            for e in list_entries():
                print(f"{e.model_id:3d}  {e.name:12s}  x{e.scale}  range {e.data_range:g}  {e.weights}  {e.description}")
        else:
            run(args)
        return 0

    return run_guarded(body, "results.json, results.txt and earlier SR images were not changed")


if __name__ == "__main__":
    exit_now(main())
