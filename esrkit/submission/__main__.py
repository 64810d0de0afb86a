"""Command line of the submission kit: ``python -m esrkit.submission {check,package,export} ...``.

Exit codes: 0 all rules passed (check), the upload was written (package) or the files were (export);
1 a rule failed; 2 a usage error (one line on stderr saying what to fix); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from esrkit.datasets import LAYOUTS
from esrkit.cli import run_guarded
from esrkit.submission.candidate import Candidate, from_entry, from_model_file
from esrkit.registry import get_entry
from esrkit.submission.check import YEARS, CheckOptions, run_check
from esrkit.submission.export import export_entry
from esrkit.submission.package import PackageOptions, run_package


def _add_model_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model_id", help="a registered entry: name or numeric id")
    which.add_argument("--model_file", type=Path, help="a team's model file, models/teamNN_Name.py (imported by path)")
    p.add_argument("--weights", type=Path, default=None,
                   help="weights file (default: the entry's, or model_zoo/<model file stem>.{pth,pt,ckpt})")
    p.add_argument("--scale", type=int, default=None, help="for a model file without register_entry (default 4)")
    p.add_argument("--data_range", type=float, default=None,
                   help="for a model file without register_entry: 1.0 or 255 (check reports the one that fits)")
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS], help="force a dataset layout")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m esrkit.submission", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="judge an entry against every submission rule; exit 0 only if all pass")
    _add_model_args(check)
    check.add_argument("--baseline", default="RFDN", help="registered entry to compare with (default RFDN)")
    check.add_argument("--baseline_weights", type=Path, default=None,
                       help="the baseline's weights (default: its file in model_zoo/)")
    check.add_argument("--year", type=int, default=2023, choices=sorted(YEARS),
                       help="whose rules: FLOPs counter and PSNR bars (default 2023)")
    check.add_argument("--data_dir", type=Path, default=None,
                       help="validation folder (NTIRE or benchmark layout, or HR images); default: the demo photos")
    check.add_argument("--runs", type=int, default=3, help="timed repeats per image for the runtime ratio (default 3)")

    package = sub.add_parser("package", help="run the entry on a split's LR images and write the upload zip")
    _add_model_args(package)
    package.add_argument("--data_dir", type=Path, required=True, help="the folder with the split's HR and LR images")
    package.add_argument("--split", default="valid", help="which split to package (default valid)")
    package.add_argument("--lr_only", action="store_true",
                         help="the split's LR images alone (the 2024/2025 test phase gives no HR): no PSNR")
    package.add_argument("--out", type=Path, required=True, help="the zip to write (replaced only once complete)")
    package.add_argument("--extra_data", action="store_true", help="trained with data beyond the challenge's")
    package.add_argument("--description", default="", help="the readme's 'Other description' (one line)")
    package.add_argument("--factsheet", type=Path, default=None,
                         help="factsheet skeleton to write (default: <out stem>_factsheet.md beside the zip)")
    export = sub.add_parser("export", help="write a registered entry as one self-contained models/teamNN_Name.py "
                                           "and model_zoo/teamNN_name.pth, checked to reproduce it exactly")
    export.add_argument("--model_id", required=True, help="a registered entry: name or numeric id")
    export.add_argument("--weights", type=Path, default=None, help="weights file (default: the entry's in model_zoo/)")
    export.add_argument("--team", type=int, required=True, help="your two-digit team id")
    export.add_argument("--name", default=None,
                        help="the model's class and file name (default: the class the entry builds, or the entry's "
                             "name when its builder passes non-default arguments)")
    export.add_argument("--out", type=Path, required=True,
                        help="the submission folder; models/ and model_zoo/ are made in it (nothing is overwritten)")
    return parser.parse_args(argv)


def run_export(args: argparse.Namespace) -> int:
    entry = get_entry(args.model_id)
    model, weights = entry.load(args.weights)
    result = export_entry(entry, model, args.team, args.name, args.out)
    print(f"wrote {result.model_file} (class {result.class_name}, from {', '.join(result.sources)}) and "
          f"{result.weights_file} ({weights.name} re-saved as a plain state_dict); the file alone reproduces "
          f"{entry.name} bit for bit")
    print(f"next: python -m esrkit.submission check --model_file {result.model_file} --scale {entry.scale} "
          f"--data_range {entry.data_range:g}")
    return 0


def load_candidate(args: argparse.Namespace) -> Candidate:
    """The entry or model file named on the command line."""
    if args.model_file is not None:
        return from_model_file(args.model_file, args.weights, args.scale, args.data_range)
    return from_entry(args.model_id, args.weights, args.scale, args.data_range)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        if args.command == "export":
            return run_export(args)
        candidate = load_candidate(args)
        if args.command == "check":
            options = CheckOptions(baseline=args.baseline, baseline_weights=args.baseline_weights, year=args.year,
                                   data_dir=args.data_dir, layout=args.layout, device=args.device, runs=args.runs)
            report = run_check(candidate, options)
            print(report.render())
            return 0 if report.passed else 1
        result = run_package(candidate, PackageOptions(
            data_dir=args.data_dir, out=args.out, split=args.split, layout=args.layout, lr_only=args.lr_only,
            device=args.device,
            extra_data=args.extra_data, description=args.description, factsheet=args.factsheet,
        ))
        print(f"wrote {result.zip_path} ({len(result.members)} files: {len(result.members) - 1} SR images + readme.txt) "
              f"and {result.factsheet_path}")
        print(result.readme, end="")
        return 0

    return run_guarded(body, "interrupted: nothing was replaced")


if __name__ == "__main__":
    sys.exit(main())
