"""Challenge-format evaluation of one entry (the NTIRE Efficient SR ``test_demo.py``, faithfully).

    python test_demo.py                                   # MLRN-entire on the embedded demo photos
    python test_demo.py --data_dir DIR --model_id RFDN --weights team00_rfdn.pth [--include_test] [--ssim]
    python test_demo.py --data_dir DIR --pipeline --fast      # + pipelined loop, + fast-path figures beside

Writes ``results.json`` / ``results.txt`` (official format, merged with existing entries) in
``--results_dir`` (default: the current folder, as the official kit) and the SR images under
``--save_dir/<id>_<entry>/<split>/``. See README.md for every flag and where each number comes from.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from esrkit import __version__
from esrkit.complexity import fvcore_counts, official_counts
from esrkit.datasets import LAYOUTS, Split, demo_split, open_split
from esrkit.cli import run_guarded
from esrkit.errors import KitError
from esrkit.fastpath import ENGINES, PRECISIONS, FastForward, FastOptions, options_from_flags
from esrkit.pipeline import PipelinedRunner
from esrkit.registry import DEFAULT_ENTRY, Entry, get_entry, list_entries
from esrkit.results import merge_results, split_record, write_results_txt
from esrkit.runner import SplitResult, SplitRunner, device_name, pick_device, prepare_model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, default=None,
                   help="dataset folder (NTIRE 2023 / 2024-2025 / benchmark layout, or a folder of HR images); "
                        "default: the embedded demo photos")
    p.add_argument("--save_dir", type=Path, default=Path("results"), help="where SR images go (default: results/)")
    p.add_argument("--results_dir", type=Path, default=Path("."),
                   help="where results.json / results.txt are merged (default: the current folder)")
    p.add_argument("--model_id", default=DEFAULT_ENTRY, help=f"entry name or numeric id (default: {DEFAULT_ENTRY})")
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: the entry's file in model_zoo/)")
    p.add_argument("--include_test", action="store_true", help="also run the test split")
    p.add_argument("--hybrid_test", action="store_true", help="NTIRE 2023 hybrid LSDIR+DIV2K test only (skips valid)")
    p.add_argument("--ssim", action="store_true", help="also compute SSIM (RGB and Y)")
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS], help="force a dataset layout")
    p.add_argument("--lr_only", action="store_true",
                   help="the LR images alone (e.g. the 2024/2025 test phase; with --layout folder, a folder of LR "
                        "images): runtimes and SR images, no PSNR")
    p.add_argument("--tile", type=int, default=None, help="tile size in LR pixels (default: the entry's; none = whole image)")
    p.add_argument("--tile_overlap", type=int, default=None, help="tile overlap in LR pixels (default: the entry's, 32)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu")
    p.add_argument("--runs", type=int, default=3,
                   help="warm timing beside the challenge figure: N timed repeats per image after one warm-up, "
                        "median (0 turns it off)")
    p.add_argument("--no_save", action="store_true", help="do not write SR images")
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
    fast.add_argument("--compile_mode", default="default", help="torch.compile mode for --engine compile[+graphs]")
    return p.parse_args(argv)


def check_options(args: argparse.Namespace) -> None:
    if args.tile is not None and args.tile < 16:
        raise KitError(f"--tile {args.tile} is too small: give a tile of at least 16 LR pixels, or leave it out")
    if args.tile_overlap is not None and not (0 <= args.tile_overlap < (args.tile or 10**9)):
        raise KitError(f"--tile_overlap {args.tile_overlap} must be >= 0 and smaller than the tile")
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
    return [open_split(args.data_dir, name, args.layout, scale, lr_only=args.lr_only) for name in names]


def check_writable(folder: Path, flag: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".esrkit_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise KitError(f"{flag} {folder} is not writable ({exc.strerror or exc}): choose another {flag}") from None


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_options(args)
    entry = get_entry(args.model_id)
    splits = resolve_splits(args, entry.scale)
    model, weights_path = entry.load(args.weights)
    save_dir = None if args.no_save else args.save_dir / entry.key
    for folder, flag in ((args.results_dir, "--results_dir"), *(((save_dir, "--save_dir"),) if save_dir else ())):
        check_writable(folder, flag)

    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = False
    if device.type == "cuda":
        torch.cuda.empty_cache()
    counts = official_counts(model)
    try:
        fvcore = fvcore_counts(model)
    except KitError as exc:  # fvcore is optional: the challenge's own figures do not need it
        print(f"warning: no fvcore FLOPs: {exc}", file=sys.stderr)
        fvcore = None
    model = prepare_model(model, device)
    common: dict[str, Any] = dict(
        scale=entry.scale,
        data_range=entry.data_range,
        device=device,
        tile=args.tile if args.tile is not None else entry.tile,
        tile_overlap=args.tile_overlap if args.tile_overlap is not None else entry.tile_overlap,
        ssim=args.ssim,
    )
    loop = PipelinedRunner if args.pipeline else SplitRunner
    runner = loop(model, **common, warm_runs=max(args.runs, 0), save_dir=save_dir, progress=print)
    fast_options = options_from_flags(args.fast, args.precision, args.engine)
    if splits[0].layout == "demo":
        print("Demo set: scikit-image sample photos with LR made by the kit's MATLAB-bicubic imresize. "
              "This is NOT DIV2K: the PSNR is not comparable to challenge figures.")
    print(f"{entry.key} on {device_name(device)} ({device.type}), data range {entry.data_range:g}, weights {weights_path}")
    split_results, walls = zip(*(timed_run(runner, split) for split in splits))

    record: dict[str, Any] = {}
    for r, wall in zip(split_results, walls):
        record.update(split_record(r))
        record[f"{r.split}_wall_s"] = wall
    record["loop"] = "pipelined" if args.pipeline else "sequential"
    fast_results: list[SplitResult] = []
    if fast_options is not None:
        fast_results = run_fast(model, common, device, fast_options, splits, split_results, record)
    record.update(
        activations=counts.activations / 1e6,
        num_conv=counts.num_conv,
        flops=counts.flops / 1e9,
        num_parameters=counts.params / 1e6,
        flops_fvcore=None if fvcore is None else fvcore.macs / 1e9,
        flops_fvcore_unsupported_ops=None if fvcore is None else fvcore.unsupported_ops,
        device=device_name(device),
        device_type=device.type,
        timing="CUDA events around the forward pass" if device.type == "cuda" else "wall clock around the forward pass",
        weights=str(weights_path),
        data_dir=str(splits[0].root),
        layout=splits[0].layout,
        lr_source="made by the kit's MATLAB-bicubic imresize" if splits[0].lr_made_by_kit else "LR files",
        lr_only=not splits[0].has_hr,
        data_range=entry.data_range,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        kit_version=__version__,
        torch_version=torch.__version__,
    )
    results = merge_results(args.results_dir / "results.json", entry.key, record)
    write_results_txt(args.results_dir / "results.txt", results, args.include_test, args.hybrid_test)
    print_summary(entry, list(split_results), record, fast_results)
    return record


def timed_run(runner: SplitRunner, split: Split) -> tuple[SplitResult, float]:
    """The runner's result on ``split`` and the wall time of the whole loop in seconds."""
    t0 = time.perf_counter()
    result = runner.run(split)
    return result, time.perf_counter() - t0


def run_fast(
    model: torch.nn.Module,
    common: dict[str, Any],
    device: torch.device,
    options: FastOptions,
    splits: Sequence[Split],
    challenge: Sequence[SplitResult],
    record: dict[str, Any],
) -> list[SplitResult]:
    """The fast pass after every challenge pass (pipelined, no SR images saved); adds ``<split>_fast_*`` keys."""
    fast = FastForward(model, device, options, copy_out=False)
    print(f"fast path: {fast.describe()}")
    runner = PipelinedRunner(model, **common, fast=fast)
    results = []
    for split, ref in zip(splits, challenge):
        r, wall = timed_run(runner, split)
        r.split = f"{split.name}_fast"
        rec = split_record(r)
        for extra in ("cold_runtime", "ave_runtime_excl_first"):  # after prepare(), no image is cold
            rec.pop(f"{r.split}_{extra}", None)
        rec[f"{r.split}_wall_s"] = wall
        if r.has_metrics:
            rec[f"{r.split}_psnr_diff_max"] = max(abs(a - b) for a, b in zip(r.psnr, ref.psnr))
            rec[f"{r.split}_ave_psnr_diff"] = rec[f"{r.split}_ave_psnr"] - sum(ref.psnr) / len(ref.psnr)
        record.update(rec)
        results.append(r)
    record.update(fast_engine=fast.describe(), fast_setup_ms=fast.setup_ms, fast_graph_captures=fast.captures)
    return results


def print_summary(
    entry: Entry, split_results: list[SplitResult], record: dict[str, Any], fast_results: Sequence[SplitResult] = ()
) -> None:
    """The Table 3 style row, then the extras beside it."""
    first = split_results[0].split
    print("\nTeam/entry            Time [ms]   PSNR [dB]   #Params [M]  FLOPs [G]  #Acts [M]  GPU Mem [M]  #Conv")
    memory, psnr = record[f"{first}_memory"], record.get(f"{first}_ave_psnr")
    print(f"{entry.key:20s}  {record[f'{first}_ave_runtime']:9.2f}   {'-' if psnr is None else format(psnr, '.2f'):>9s}   "
          f"{record['num_parameters']:11.3f}  {record['flops']:9.2f}  {record['activations']:9.2f}  "
          f"{'-' if memory is None else format(memory, '.2f'):>11s}  {record['num_conv']:5d}")
    for r in split_results:
        m = r.split
        extras = [f"Y-PSNR {record[f'{m}_ave_psnr_y']:.2f} dB" if r.has_metrics else "LR only: no PSNR (no HR images)",
                  f"cold first forward {record[f'{m}_cold_runtime']:.2f} ms"]
        if f"{m}_ave_warm_runtime" in record:
            extras.append(f"warm {record[f'{m}_ave_warm_runtime']:.2f} ms (mean of per-image medians; "
                          f"their median {record[f'{m}_median_warm_runtime']:.2f} ms)")
        if f"{m}_ave_ssim" in record:
            extras.append(f"SSIM {record[f'{m}_ave_ssim']:.4f} / Y {record[f'{m}_ave_ssim_y']:.4f}")
        print(f"  {m} ({len(r.names)} images): " + "; ".join(extras))
    for r in fast_results:
        m, base = r.split, r.split.removesuffix("_fast")
        # Against the challenge pass's steady state (warm medians, else all but the cold first image).
        ref_key = next((k for k in (f"{base}_ave_warm_runtime", f"{base}_ave_runtime_excl_first", f"{base}_ave_runtime")
                        if k in record), f"{base}_ave_runtime")
        ratio = record[f"{m}_ave_runtime"] / record[ref_key]
        psnr = (f"PSNR {record[f'{m}_ave_psnr']:.4f} dB (mean diff {record[f'{m}_ave_psnr_diff']:+.4f}, "
                f"max per image {record[f'{m}_psnr_diff_max']:.4f})" if r.has_metrics else "no PSNR (LR only)")
        print(f"  {m} [{r.engine}]: {record[f'{m}_ave_runtime']:.2f} ms ({ratio:.2f}x {ref_key} "
              f"{record[ref_key]:.2f} ms), {psnr}; wall {record[f'{m}_wall_s']:.2f} s "
              f"vs {record[f'{base}_wall_s']:.2f} s ({record['loop']} challenge pass)")
    fvcore = "n/a (fvcore not installed)" if record["flops_fvcore"] is None else f"{record['flops_fvcore']:.2f}"
    print(f"  FLOPs [G, MACs on 3x256x256]: {record['flops']:.2f} official hook counter (2022-2023, Table 3); "
          f"{fvcore} fvcore (2024-2025)")
    print(f"  device: {record['device']}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        if args.list:
            for e in list_entries():
                print(f"{e.model_id:3d}  {e.name:12s}  x{e.scale}  range {e.data_range:g}  {e.weights}  {e.description}")
        else:
            run(args)
        return 0

    return run_guarded(body, "interrupted: results.json and results.txt were not changed")


if __name__ == "__main__":
    sys.exit(main())
