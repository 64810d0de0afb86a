"""Command line of the submission kit: ``python -m esrkit.submission {check,package,export,batch} ...``.

    python -m esrkit.submission check --model_file models/team07_NanoSR.py --class_name NanoSR_inference \\
        --init_args '[3, 3]' --data_range 1.0 --year 2025 --data_dir DIR
    python -m esrkit.submission package --model_id MLRN-entire --data_dir DIR --out team23.zip
    python -m esrkit.submission export --model_id MLRN-entire --team 23 --out my_submission
    python -m esrkit.submission batch --spec teams.toml --data_dir DIR --results_dir intake/

Every command takes an entry the same way: ``--model_id`` (a registered entry), ``--model_file`` with
the team's instructions as flags, or ``--spec FILE [--team N]`` (see ``esrkit/spec.py``).
Exit codes: 0 all rules passed (check), the upload / files were written (package, export), every team
was measured (batch); 1 a rule failed / a team failed; 2 a usage error (one line on stderr saying
what to fix); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from esrkit.challenge import YEARS, Convention
from esrkit.cli import EXIT_FAILED, EXIT_OK, run_guarded
from esrkit.datasets import LAYOUTS
from esrkit.device import pick_device
from esrkit.errors import KitError
from esrkit.progress import Progress
from esrkit.registry import get_entry
from esrkit.results import ResultsFiles
from esrkit.spec import (TeamSpec, add_entry_arguments, entry_from_args, load_spec_file, spec_from_args,
                         specs_from_folder)
from esrkit.submission.batch import OK, REFRESH, SKIPPED, BatchSettings, run_batch, table_markdown
from esrkit.submission.check import CheckOptions, Submission, run_check
from esrkit.submission.export import export_entry
from esrkit.submission.package import PackageOptions, run_package

DEFAULT_CHECK_YEAR = 2023  # check's rules when neither --year nor a spec file says: the MLRN paper's challenge


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS], help="force a dataset layout")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m esrkit.submission", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="judge an entry against every submission rule; exit 0 only if all pass")
    add_entry_arguments(check)
    _common(check)
    check.add_argument("--baseline", default=None, help="registered entry to compare with (default: the --year's baseline)")
    check.add_argument("--baseline_weights", type=Path, default=None,
                       help="the baseline's weights (default: its file in model_zoo/)")
    check.add_argument("--year", type=int, default=None, choices=sorted(YEARS),
                       help="whose rules: FLOPs counter, PSNR bars, baseline, allowed packages (default: the spec "
                            "file's year, else 2023)")
    check.add_argument("--data_dir", type=Path, default=None,
                       help="validation folder (NTIRE or benchmark layout, or HR images); default: the demo photos")
    check.add_argument("--runs", type=int, default=3, help="timed repeats per image for the runtime ratio (default 3)")

    package = sub.add_parser("package", help="run the entry on a split's LR images and write the upload zip")
    add_entry_arguments(package)
    _common(package)
    package.add_argument("--data_dir", type=Path, default=None,
                         help="the folder with the split's LR (and HR) images; default: the embedded demo photos "
                              "(a trial of the packaging path, not an upload)")
    package.add_argument("--split", default="valid", help="which split to package (default valid)")
    package.add_argument("--lr_only", action="store_true",
                         help="the split's LR images alone (the 2024/2025 test phase gives no HR): no PSNR")
    package.add_argument("--out", type=Path, required=True, help="the zip to write (replaced only once complete)")
    package.add_argument("--extra_data", action="store_true", help="trained with data beyond the challenge's")
    package.add_argument("--description", default="", help="the readme's 'Other description' (one line)")
    package.add_argument("--factsheet", type=Path, default=None,
                         help="factsheet skeleton to write (default: <out stem>_factsheet.md beside the zip)")

    export = sub.add_parser("export", help="write an entry as one self-contained models/teamNN_Name.py and "
                                           "model_zoo/teamNN_name.pth, checked to reproduce it exactly")
    add_entry_arguments(export)
    export.add_argument("--out", type=Path, required=True,
                        help="the submission folder; models/ and model_zoo/ are made in it (nothing is overwritten)")

    batch = sub.add_parser("batch", help="organisers: measure every team of a spec file or a folder of team files "
                                         "into one results.json / results.txt and one table")
    which = batch.add_mutually_exclusive_group(required=True)
    which.add_argument("--spec", type=Path, help="the submission spec (TOML, one [[team]] table per team)")
    which.add_argument("--models_dir", type=Path, help="a folder of models/teamNN_Name.py files (weights in the "
                                                        "model_zoo/ beside it; everything else inferred)")
    batch.add_argument("--entries", nargs="*", default=[], help="registered entries to measure too (their model_zoo weights)")
    batch.add_argument("--data_range", type=float, default=None,
                       help="the data range of every team whose spec does not give one (the organisers' default; "
                            "a file that registers its entry keeps its own)")
    batch.add_argument("--teams", nargs="*", type=int, default=None, help="only these team numbers")
    batch.add_argument("--data_dir", type=Path, required=True, help="the validation folder (official or benchmark layout)")
    batch.add_argument("--split", default="valid", help="which split (default valid)")
    batch.add_argument("--year", type=int, default=None, choices=sorted(YEARS),
                       help="results as that year's organisers wrote them (default: the spec's year, else the layout's)")
    batch.add_argument("--results_dir", type=Path, default=Path("."), help="where results.json, results.txt, "
                                                                            "batch.md and batch_status.json go")
    batch.add_argument("--save_dir", type=Path, default=None, help="also save SR images under SAVE_DIR/<key>/")
    batch.add_argument("--refresh", default="missing", choices=REFRESH,
                       help="missing: measure the teams not measured yet (or failed); all: measure every team again")
    batch.add_argument("--runs", type=int, default=0, help="warm repeats per image beside the challenge figure (default 0)")
    batch.add_argument("--ssim", action="store_true", help="also SSIM")
    batch.add_argument("--in_process", action="store_true",
                       help="run the teams in this process, not one process each (faster; but only the first team "
                            "then has a cold first image, and a team's crash stops the batch)")
    _common(batch)
    args = parser.parse_args(argv)
    return args


def run_export(args: argparse.Namespace) -> int:
    if args.team is None:
        raise KitError("export needs --team NN: your two-digit team id (it names models/teamNN_Name.py)")
    entry, _ = entry_from_args(args)
    result = export_entry(entry, args.weights, args.team, args.team_name, args.out)
    print(f"wrote {result.model_file} (class {result.class_name}, from {', '.join(result.sources)}) and "
          f"{result.weights_file} (a plain state_dict); the file alone reproduces {entry.name} bit for bit")
    post = f" --post_load {entry.post_load}" if entry.post_load else ""
    print(f"next: python -m esrkit.submission check --model_file {result.model_file} --class_name {result.class_name} "
          f"--data_range {entry.data_range:g}{post} --baseline {entry.name}")
    print("  (the exported file is torch-only, with no registration: its data range is given on the command line; "
          "to judge it against the year's baseline instead, drop --baseline and pass --baseline_weights with the "
          "official baseline weights)")
    return EXIT_OK


def run_check_command(args: argparse.Namespace) -> int:
    spec, spec_year = spec_from_args(args)
    progress = Progress(enabled=False if args.quiet else None)
    options = CheckOptions(baseline=args.baseline, baseline_weights=args.baseline_weights,
                           year=args.year or spec_year or DEFAULT_CHECK_YEAR,
                           data_dir=args.data_dir, layout=args.layout, device=args.device, runs=args.runs)
    report = run_check(Submission.from_spec(spec), options, progress)
    print(report.render())
    return EXIT_OK if report.passed else EXIT_FAILED


def run_package_command(args: argparse.Namespace) -> int:
    entry, _ = entry_from_args(args)
    progress = Progress(enabled=False if args.quiet else None)
    result = run_package(entry, PackageOptions(
        data_dir=args.data_dir, out=args.out, split=args.split, layout=args.layout, lr_only=args.lr_only,
        device=args.device, extra_data=args.extra_data, description=args.description, factsheet=args.factsheet,
    ), progress)
    print(f"wrote {result.zip_path} ({len(result.members)} files: {len(result.members) - 1} SR images + readme.txt) "
          f"and {result.factsheet_path}")
    print(result.readme, end="")
    return EXIT_OK


def batch_specs(args: argparse.Namespace) -> tuple[list[TeamSpec], int | None]:
    """The teams of the batch (a spec file's or a folder's, narrowed by ``--teams``), then ``--entries``."""
    year = None
    if args.spec is not None:
        spec_file = load_spec_file(args.spec)
        specs, year = list(spec_file.teams), spec_file.year
    else:
        specs = specs_from_folder(args.models_dir)
    if args.teams is not None:
        wanted = set(args.teams)
        unknown = wanted - {s.team for s in specs}
        if unknown:
            raise KitError(f"--teams {' '.join(map(str, sorted(unknown)))}: not in the batch "
                           f"(it has: {', '.join(str(s.team) for s in specs if s.team is not None)})")
        specs = [s for s in specs if s.team in wanted]
    return specs + [TeamSpec(entry=get_entry(name).name) for name in args.entries], year


def run_batch_command(args: argparse.Namespace) -> int:
    if args.runs < 0:
        raise KitError(f"--runs {args.runs}: give the number of warm repeats per image (0: none)")
    specs, spec_year = batch_specs(args)
    device = pick_device(args.device)  # checked here, once; each team's process opens it again
    settings = BatchSettings(args.data_dir, args.split, args.layout, args.year or spec_year, str(device),
                             ssim=args.ssim, warm_runs=args.runs, default_data_range=args.data_range,
                             save_dir=args.save_dir)
    split = settings.open_split()
    convention = Convention.for_run(settings.year, split.layout)
    progress = Progress(enabled=False if args.quiet else None)
    results = ResultsFiles(args.results_dir, include_test=False, hybrid_test=False)
    outcomes = run_batch(specs, settings, results, args.refresh, isolate=not args.in_process, progress=progress)
    print(table_markdown(outcomes, convention, split))
    failed = [o for o in outcomes if o.status not in (OK, SKIPPED)]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} measured or already measured; {len(failed)} failed; "
          f"results in {results.json_path} and {results.txt_path}")
    return EXIT_OK if not failed else EXIT_FAILED


COMMANDS = {"check": run_check_command, "package": run_package_command, "export": run_export,
            "batch": run_batch_command}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_guarded(lambda: COMMANDS[args.command](args), "nothing was replaced (a batch keeps the teams it finished)")


if __name__ == "__main__":
    sys.exit(main())
