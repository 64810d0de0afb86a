"""Command line of the submission kit: ``python -m esrkit.submission {check,package,export,batch,merge,spec,
scoring-program,verify} ...``.

    python -m esrkit.submission check --model_file models/team07_NanoSR.py --class_name NanoSR_inference \\
        --init_args '[3, 3]' --data_range 1.0 --year 2025 --data_dir DIR
    python -m esrkit.submission package --model_id MLRN-entire --data_dir DIR --out team23.zip
    python -m esrkit.submission export --model_id MLRN-entire --team 23 --out my_submission
    python -m esrkit.submission batch --spec teams.toml --data_dir DIR --results_dir intake/
    python -m esrkit.submission batch --spec teams.toml --data_dir DIR --results_dir intake/ --devices all
    python -m esrkit.submission merge shard1/results.json shard2/results.json --out intake/
    python -m esrkit.submission spec --from_select_model NTIRE2025_ESR/test_demo.py --out teams.toml
    python -m esrkit.submission scoring-program --out scoring_program.zip --year 2025 --ssim
    python -m esrkit.submission verify --spec teams.toml --team 7 --upload 07_NanoSR.zip --data_dir DIR

Every command takes an entry the same way: ``--model_id`` (a registered entry), ``--model_file`` with
the team's instructions as flags, or ``--spec FILE [--team N]`` (see ``esrkit/spec.py``).
Exit codes: 0 all rules passed (check), the upload / files / zip were written (package, export,
scoring-program), every team was measured (batch), the files were joined (merge), the upload is what the team's
code gives (verify: identical, or within one grey level); 1 a rule failed / a team failed / the upload differs or is
incomplete; 2 a usage error (one line on stderr saying what to fix); 70 an internal error (one line, the traceback
in a log file); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from esrkit.cli import EXIT_FAILED, EXIT_OK, exit_now, run_guarded, startup

with startup():  # torch and the kit take seconds to import: a Ctrl-C meanwhile is one line too
    from esrkit.challenge import YEARS, Convention, year_rules
    from esrkit.datasets import LAYOUTS
    from esrkit.device import pick_device
    from esrkit.errors import KitError
    from esrkit.progress import Progress, run_log
    from esrkit.registry import get_entry, list_entries
    from esrkit.results import ResultsFiles, read_results
    from esrkit.results_page import write_results_page
    from esrkit.spec import (InvalidTable, TeamSpec, add_entry_arguments, entry_from_args, load_spec_file,
                             spec_from_args, specs_from_folder)
    from esrkit.sandbox import Sandbox, View, confined_here, readable_tree
    from esrkit.submission.batch import (OK, REFRESH, SKIPPED, STATUS_NAME, BatchSettings, Dispatch, expected_key,
                                        read_status, run_batch)
    from esrkit.submission.round import team_files
    from esrkit.submission.table import device_mix, round_table, table_markdown, table_name
    from esrkit.submission.merge import BOOKKEEPING, BOOKKEEPING_SUFFIX, PREFER, run_merge
    from esrkit.submission.select_model import add_spec_command, run_spec_command
    from esrkit.submission.shards import resolve_shard, team_number
    from esrkit.submission.workers import Slot, cpu_slots, cuda_slots, default_threads, device_model, usable_cores
    from esrkit.submission.check import CheckOptions, Submission, run_check
    from esrkit.submission.export import export_entry
    from esrkit.submission.package import PackageOptions, run_package
    from esrkit.submission.scoring import codabench_leaderboard, write_scoring_program
    from esrkit.submission.status import amend_entry, changed_entries
    from esrkit.submission.verify import Uploads, check_upload, compare_upload, verdict_lines
    from esrkit.verdicts import PASSING, VERIFICATION_KEY

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
    check.add_argument("--unconfined", action="store_true",
                       help="run a team's file with your own rights, outside the sandbox (bubblewrap) that confines it "
                            "by default -- where no sandbox can be had")

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
    batch.add_argument("--verify_uploads", type=Path, default=None, metavar="DIR",
                       help="compare each team measured with its upload to the online server in DIR (a zip or a folder "
                            "named by its results key or number: 07_NanoSR.zip, team07/), image by image; the verdict "
                            "goes into its entry (needs --save_dir)")
    batch.add_argument("--refresh", default="missing", choices=REFRESH,
                       help="missing: measure the teams not measured yet (or failed); all: measure every team again")
    batch.add_argument("--runs", type=int, default=0, help="warm repeats per image beside the challenge figure (default 0)")
    batch.add_argument("--ssim", action="store_true", help="also SSIM")
    batch.add_argument("--unconfined", action="store_true",
                       help="run the teams' code with your own rights, outside the sandbox (bubblewrap) that confines "
                            "it by default -- where no sandbox can be had; said in results.json, results.txt and the "
                            "page")
    batch.add_argument("--in_process", action="store_true",
                       help="run the teams in this process, not one process each (faster; but only the first team "
                            "then has a cold first image, and a team's crash stops the batch); unconfined by nature, "
                            "so it needs --unconfined")
    parallel = batch.add_argument_group("several devices, several machines")
    parallel.add_argument("--devices", default=None,
                          help="cuda:0,cuda:1,... or all: one worker per GPU, each team alone on its GPU while it is "
                               "measured, teams taken from one queue (instead of --device)")
    parallel.add_argument("--workers", type=int, default=None,
                          help="N workers on the CPU, the same way (each with --threads torch threads)")
    parallel.add_argument("--threads", type=int, default=None,
                          help="torch threads per team (default: torch's own; with --devices / --workers the usable "
                               "cores divided among the workers). The same --threads makes a sequential and a "
                               "parallel CPU batch give the same figures (convolutions round differently with "
                               "another thread count)")
    parallel.add_argument("--team_timeout", type=float, default=None,
                          help="seconds a team may run before its process is killed and it is reported as timed out")
    parallel.add_argument("--shard", default=None,
                          help="K/N: measure only shard K of N (counted from 1) -- a team's shard is fixed by its "
                               "number (or name), so adding teams moves no other. Default inside a Slurm array: "
                               "SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT (counted from SLURM_ARRAY_TASK_MIN)")
    _common(batch)

    merge = sub.add_parser(
        "merge", help="organisers: join shards' results.json files (and the batch_status.json beside each) into one "
                      "results folder",
        description="Join results.json files into DIR/results.json + results.txt, and the batch_status.json files "
                    "beside the inputs into DIR/batch_status.json. A key held by several inputs must hold the same "
                    f"figures in each: equal on every key except {', '.join(BOOKKEEPING)} and *{BOOKKEEPING_SUFFIX} "
                    "(bookkeeping); otherwise the merge is refused, naming the key and both files, unless --prefer "
                    "says which wins. Entries of another year's results convention, FLOPs counter or data than the "
                    "baseline's (else most entries') are refused unless --allow_mixed. Nothing is written unless "
                    "every key is settled.")
    merge.add_argument("inputs", nargs="+", type=Path, help="results.json files (or the folders that hold them)")
    merge.add_argument("--out", type=Path, required=True,
                       help="the folder to write; if it already holds a results.json, that file must be an input")
    merge.add_argument("--prefer", default=None, choices=PREFER,
                       help="when one key holds different figures: newest (its 'date'; a tie: the later input), "
                            "first or last (input order)")
    merge.add_argument("--allow_mixed", action="store_true",
                       help="keep entries of another results convention, FLOPs counter or data set (the results "
                            "page marks them and leaves them unranked) instead of refusing the merge")
    add_spec_command(sub)

    scoring = sub.add_parser(
        "scoring-program", help="organisers: the online phase's scoring program (CodaLab / CodaBench), a zip that "
                                "scores the teams' uploaded SR images against the hidden HR images",
        description="Write the zip the organisers upload as the phases' scoring program: metadata, score.py "
                    "(Python 3.8+, numpy, Pillow) and config.json. It scores the uploaded SR PNGs (named as the HR "
                    "images) with the kit's PSNR and Y-PSNR (and SSIM, Y-SSIM) into scores.txt, scores.json and "
                    "detailed_results.html.")
    scoring.add_argument("--out", type=Path, required=True, help="the zip to write (replaced only once complete)")
    scoring.add_argument("--year", type=int, default=None, choices=sorted(YEARS),
                         help="score as that year's organisers: its dataset layout's HR folders name the split, and "
                              "its PSNR bar is said on the detailed page (default: any layout, no bar)")
    scoring.add_argument("--ssim", action="store_true", help="also SSIM and Y-SSIM (as test_demo.py --ssim)")
    verify = sub.add_parser(
        "verify", help="organisers: are a team's uploaded SR images what its submitted code produces? (reproduced "
                       "confined, compared image by image)",
        description="Reproduce the split with the team's code (a batch of that one team into a temporary folder, its "
                    "code confined as batch confines it) and compare its SR images with the team's upload, image by "
                    "image: identical, within one grey level (device or library rounding), different (each image "
                    "named, with its PSNR against the reproduced one) or incomplete (missing, extra, unreadable, "
                    "wrong-size images). Exit 0 identical or within one grey level, 1 different or incomplete.")
    verify.add_argument("--spec", type=Path, required=True, help="the submission spec (as batch reads it)")
    verify.add_argument("--team", type=int, default=None, help="the team's number in the spec (not needed for one team)")
    verify.add_argument("--upload", type=Path, required=True,
                        help="the team's upload: a zip, or a folder of NAME.png files (flat or in one folder)")
    verify.add_argument("--data_dir", type=Path, required=True, help="the folder with the split's LR (and HR) images")
    verify.add_argument("--split", default="valid", help="which split the upload is of (default valid)")
    verify.add_argument("--data_range", type=float, default=None,
                        help="the team's data range when its spec does not give one (as batch --data_range)")
    verify.add_argument("--results_dir", type=Path, default=None,
                        help="a batch's results folder: the verdict goes into the team's entry there (results.json, "
                             "results.txt, batch_status.json, results.html)")
    verify.add_argument("--unconfined", action="store_true",
                        help="run the team's code with your own rights, outside the sandbox (bubblewrap) that confines "
                             "it by default -- where no sandbox can be had")
    _common(verify)
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
    # Judged against itself when it is a registered entry (the same network: every rule but runtime is exact);
    # a team's file is no registered entry, so it is judged against the year's baseline.
    registered = entry.source is None and entry.name.lower() in {e.name.lower() for e in list_entries()}
    against = f" --baseline {entry.name}" if registered else ""
    print(f"next: python -m esrkit.submission check --model_file {result.model_file} --class_name {result.class_name} "
          f"--data_range {entry.data_range:g}{post}{against}")
    print("  (the exported file is torch-only, with no registration: its data range is given on the command line; "
          "to judge it against the year's baseline instead, drop --baseline and pass --baseline_weights with the "
          "official baseline weights)" if registered else
          "  (judged against the year's baseline: pass --baseline_weights with the official baseline weights and "
          "--data_dir with a validation set)")
    return EXIT_OK


def run_check_command(args: argparse.Namespace) -> int:
    spec, spec_year = spec_from_args(args)
    unconfined = spec.model_file is not None and not confined_here()
    if unconfined and not args.unconfined:
        return check_confined(args, spec, args.year or spec_year or DEFAULT_CHECK_YEAR)
    progress = Progress(enabled=False if args.quiet else None)
    options = CheckOptions(baseline=args.baseline, baseline_weights=args.baseline_weights,
                           year=args.year or spec_year or DEFAULT_CHECK_YEAR,
                           data_dir=args.data_dir, layout=args.layout, device=args.device, runs=args.runs)
    report = run_check(Submission.from_spec(spec), options, progress)
    if unconfined:
        print("warning: the team's code ran UNCONFINED (--unconfined), with your rights", file=sys.stderr)
    print(report.render())
    return EXIT_OK if report.passed else EXIT_FAILED


def check_confined(args: argparse.Namespace, spec: TeamSpec, year: int) -> int:
    """``check`` of a team's file, run as it is inside a sandbox (:mod:`esrkit.sandbox`) that sees the team's file and
    weights, the baseline's weights, the data and the spec, read-only, and nothing else of the machine's files."""
    sandbox = Sandbox.find()
    readable = [*team_files(spec), *([args.spec] if args.spec is not None else [])]
    if args.data_dir is not None:
        readable += readable_tree(args.data_dir)
    baseline = get_entry(args.baseline or year_rules(year).baseline)
    weights = args.baseline_weights or baseline.default_weights_path()
    readable += [weights] if weights is not None else []
    scratch = Path(tempfile.mkdtemp(prefix="esrkit-check-"))
    try:
        print(f"the team's code runs confined ({sandbox.describe()})", file=sys.stderr, flush=True)
        return sandbox.run([sys.executable, "-m", "esrkit.submission", *args.argv],
                           View(scratch, readable=tuple(Path(os.path.abspath(p)) for p in readable), cwd=Path.cwd()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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


def batch_specs(args: argparse.Namespace) -> tuple[list[TeamSpec], list[InvalidTable], int | None]:
    """The teams of the batch (a spec file's or a folder's, narrowed by ``--teams``), then ``--entries``; and the
    spec's tables that could not be read among those selected (each is a failed team, the others run)."""
    year, invalid = None, []
    if args.spec is not None:
        spec_file = load_spec_file(args.spec)
        specs, invalid, year = list(spec_file.teams), list(spec_file.invalid), spec_file.year
    else:
        specs = specs_from_folder(args.models_dir)
    if args.teams is not None:  # a team's number: its spec's, else its file name's (teamNN_Name.py)
        wanted = set(args.teams)
        known = {team_number(s) for s in specs} | {t.team for t in invalid}
        unknown = wanted - known
        if unknown:
            raise KitError(f"--teams {' '.join(map(str, sorted(unknown)))}: not in the batch "
                           f"(it has: {', '.join(str(n) for n in sorted(k for k in known if k is not None))})")
        specs = [s for s in specs if team_number(s) in wanted]
        invalid = [t for t in invalid if t.team in wanted]
    return specs + [TeamSpec(entry=get_entry(name).name) for name in args.entries], invalid, year


def batch_slots(args: argparse.Namespace) -> list[Slot] | None:
    """The workers ``--devices`` / ``--workers`` ask for (None: one team after another on ``--device``)."""
    if args.devices is None and args.workers is None:
        return None
    if args.in_process:
        raise KitError("--devices / --workers run each team in a process of its own: drop --in_process")
    if args.devices is not None and args.workers is not None:
        raise KitError("--devices runs one worker per GPU, --workers N workers on the CPU: give one of them")
    if args.devices is not None:
        if args.device != "auto":
            raise KitError(f"--device {args.device} and --devices {args.devices}: give one of them")
        slots = cuda_slots(args.devices)
        models = {device_model(slot.name) for slot in slots}
        if len(models) > 1:
            raise KitError(f"--devices {args.devices} holds GPUs of different models ({'; '.join(sorted(models))}): "
                           f"their runtimes would not compare; give the devices of one model")
        return slots
    if args.device not in ("auto", "cpu"):
        raise KitError(f"--workers runs the teams on the CPU, not on --device {args.device}: for GPUs use --devices")
    return cpu_slots(args.workers)


def run_batch_command(args: argparse.Namespace) -> int:
    if args.runs < 0:
        raise KitError(f"--runs {args.runs}: give the number of warm repeats per image (0: none)")
    if args.threads is not None and args.threads < 1:
        raise KitError(f"--threads {args.threads}: give the torch threads per team (1 or more)")
    if args.team_timeout is not None and not args.team_timeout > 0:
        raise KitError(f"--team_timeout {args.team_timeout:g}: give the seconds a team may run (more than 0)")
    if args.team_timeout is not None and args.in_process:
        raise KitError("--team_timeout stops a team's own process: drop --in_process")
    if args.in_process and not args.unconfined:
        raise KitError("--in_process runs every team's code inside this process, which cannot be confined: add "
                       "--unconfined to say so (or drop --in_process: each team then runs confined in its own process)")
    sandbox = None if args.unconfined else Sandbox.find()
    shard = resolve_shard(args.shard)
    slots = batch_slots(args)
    specs, invalid, spec_year = batch_specs(args)
    progress = Progress(enabled=False if args.quiet else None)
    if slots is None:
        device = str(pick_device(args.device))  # checked here, once; each team's process opens it again
        threads = args.threads
    else:  # the GPUs are checked without opening them here: each team's process opens its own
        device = "cpu" if slots[0].device == "cpu" else slots[0].name
        threads = args.threads if args.threads is not None else default_threads(len(slots))
        how = "--threads" if args.threads is not None else f"{usable_cores()} usable cores / {len(slots)} workers"
        where = "on the CPU" if device == "cpu" else f"on {', '.join(slot.name for slot in slots)}"
        progress.write(f"{len(slots)} worker{'s' if len(slots) != 1 else ''} {where}, each team alone on its worker; "
                       f"{threads} torch thread{'s' if threads != 1 else ''} per team ({how})")
    settings = BatchSettings(args.data_dir, args.split, args.layout, args.year or spec_year, device,
                             ssim=args.ssim, warm_runs=args.runs, default_data_range=args.data_range,
                             save_dir=args.save_dir, threads=threads)
    split = settings.open_split()
    convention = Convention.for_run(settings.year, split.layout)
    results = ResultsFiles(args.results_dir, include_test=False, hybrid_test=False)
    if shard is not None:
        mine = shard.select(specs)
        progress.write(f"shard {shard} ({shard.source}): {len(mine)} of the batch's {len(specs)} teams")
        if not mine and not shard.select_invalid(invalid):
            print(f"shard {shard}: no team of this batch falls in it ({len(specs)} teams over {shard.count} shards); "
                  f"nothing to do")
            return EXIT_OK
    progress.log = run_log(results.folder)  # the batch runs: its lines (and each team's) go to the run log too
    progress.write(f"each team's code runs confined ({sandbox.describe()})" if sandbox is not None else
                   "warning: the teams' code runs UNCONFINED (--unconfined), with your rights: said in every entry")
    dispatch = None if slots is None and args.team_timeout is None else Dispatch(
        tuple(slots) if slots is not None else (Slot(device, device),), args.team_timeout)
    uploads = batch_uploads(args.verify_uploads, specs, convention, progress)
    outcomes = run_batch(specs, settings, results, args.refresh, isolate=not args.in_process, progress=progress,
                         dispatch=dispatch, shard=shard, invalid=invalid, sandbox=sandbox, uploads=uploads)
    if uploads is not None:
        for o in outcomes:
            if o.status == SKIPPED:
                progress.write(f"{o.key or o.label}: already measured, so its upload was not compared (a team's upload "
                               f"is compared when the batch measures it: --refresh all, or verify --results_dir)")
    rows = outcomes if shard is not None else round_table(outcomes, results)
    print(table_markdown(rows, convention, split, shard, len(specs) + len(invalid)))
    write_page(results.folder, settings.year)
    failed = [o for o in outcomes if o.status not in (OK, SKIPPED)]
    table = "" if shard is None else f"; this shard's table in {results.folder / table_name(shard)}"
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} measured or already measured; {len(failed)} failed; "
          f"results in {results.json_path} and {results.txt_path}{table}")
    return EXIT_OK if not failed else EXIT_FAILED


def batch_uploads(folder: Path | None, specs: Sequence[TeamSpec], convention: Convention,
                  progress: Progress) -> Uploads | None:
    """``--verify_uploads``: the folder, checked before anything runs (a team two uploads name is refused); the
    uploads no team of the batch takes are said."""
    if folder is None:
        return None
    uploads = Uploads.open(folder)
    for name in uploads.check([(spec, expected_key(spec, convention)) for spec in specs]):
        progress.write(f"warning: --verify_uploads: {name} names no team of this batch: not compared")
    return uploads


def run_verify_command(args: argparse.Namespace) -> int:
    check_upload(args.upload)
    spec_file = load_spec_file(args.spec)
    spec = spec_file.select(args.team)
    results = None if args.results_dir is None else ResultsFiles(args.results_dir)
    if results is not None:
        refuse_changed_entry(results, spec.label)
    sandbox = None if args.unconfined else Sandbox.find()
    print(f"the team's code runs confined ({sandbox.describe()})" if sandbox is not None else
          "warning: the team's code runs UNCONFINED (--unconfined), with your rights", file=sys.stderr, flush=True)
    progress = Progress(enabled=False if args.quiet else None)
    with tempfile.TemporaryDirectory(prefix="esrkit-verify-") as tmp:  # a batch of this one team, then dropped
        save_dir = Path(tmp) / "sr"
        save_dir.mkdir()
        settings = BatchSettings(args.data_dir, args.split, args.layout, spec_file.year, str(pick_device(args.device)),
                                 default_data_range=args.data_range, save_dir=save_dir)
        [outcome] = run_batch([spec], settings, ResultsFiles(Path(tmp) / "results"), "all", progress=progress,
                              sandbox=sandbox)
        if outcome.status != OK or outcome.key is None or outcome.record is None:
            print(f"{outcome.label}: its code did not reproduce the {args.split} split, so there is nothing to compare "
                  f"the upload with: {outcome.error}")
            return EXIT_FAILED
        reproduced = save_dir / outcome.key / args.split
        record = compare_upload(args.upload, reproduced, outcome.record[f"{args.split}_images"], args.split)
    for line in verdict_lines(outcome.key, record):
        print(line)
    if results is not None:
        if amend_entry(results, outcome.key, {VERIFICATION_KEY: record}):
            print(f"recorded in {results.json_path} (entry {outcome.key}; results.txt, {STATUS_NAME} beside it)")
            write_page(results.folder, spec_file.year)
        else:
            print(f"{results.json_path} has no entry {outcome.key}: the verdict was not recorded")
    return EXIT_OK if record["verdict"] in PASSING else EXIT_FAILED


def refuse_changed_entry(results: ResultsFiles, label: str) -> None:
    """Before reproducing anything: the team's entry in ``results`` can take a verdict (the kit wrote it as it is)."""
    if not results.folder.is_dir():
        raise KitError(f"--results_dir {results.folder} does not exist: give the batch's results folder")
    changed = changed_entries(read_results(results.json_path), read_status(results.folder / STATUS_NAME))
    for key, holder in changed.items():
        if holder == label:
            raise KitError(f"{key}: its entry in {results.json_path} was changed outside the kit since the kit wrote "
                           f"it: measure it again with batch --refresh missing first, then verify")


def run_merge_command(args: argparse.Namespace) -> int:
    result = run_merge(args.inputs, args.out, args.prefer, args.allow_mixed)
    notes = []
    if result.identical:
        notes.append(f"{len(result.identical)} held identically by several inputs")
    if result.preferred:
        notes.append(f"{len(result.preferred)} settled by --prefer {args.prefer} ({', '.join(result.preferred)})")
    status = (f"; {len(result.status)} team records from {len(result.status_files)} batch_status.json file(s) into "
              f"{args.out / 'batch_status.json'}" if result.status else "")
    print(f"merged {len(result.entries)} entries from {len(args.inputs)} file(s) into {args.out / 'results.json'} and "
          f"results.txt{' (' + '; '.join(notes) + ')' if notes else ''}{status}")
    mix = device_mix(result.entries.values())
    if mix is not None:
        print(f"warning: the entries were {mix}", file=sys.stderr)
    if result.mixed:
        print(f"warning: --allow_mixed kept {len(result.mixed)} entr{'y' if len(result.mixed) == 1 else 'ies'} "
              f"measured otherwise than {result.reference} ({', '.join(result.mixed)}): the results page marks "
              "them and does not rank them", file=sys.stderr)
    write_page(args.out, None)
    return EXIT_OK


def write_page(folder: Path, year: int | None) -> None:
    """``results.html`` of everything in ``folder``'s results.json and batch_status.json. The page is a view of the
    results: when it cannot be made, that is a warning, and the results stand."""
    path = folder / "results.html"
    try:
        write_results_page(path, read_results(folder / "results.json"), status=read_status(folder / STATUS_NAME),
                           year=year)
    except KitError as exc:
        print(f"warning: {path} was not written: {exc}", file=sys.stderr)
        return
    print(f"results page: {path}")


def run_scoring_command(args: argparse.Namespace) -> int:
    program = write_scoring_program(args.out, args.year, args.ssim)
    config = program.config
    print(f"wrote {program.zip_path} ({', '.join(program.members)}): {config['challenge']}, "
          f"{', '.join(m['label'] for m in config['metrics'])}")
    print("a phase writes its split's keys (scores.txt, scores.json); the leaderboard block of a CodaBench "
          "competition.yaml for them:")
    print(codabench_leaderboard(program.columns), end="")
    return EXIT_OK


COMMANDS = {"check": run_check_command, "package": run_package_command, "export": run_export,
            "batch": run_batch_command, "merge": run_merge_command, "spec": run_spec_command,
            "scoring-program": run_scoring_command, "verify": run_verify_command}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run_guarded(lambda: COMMANDS[args.command](args), "nothing was replaced (a batch keeps the teams it finished)")


if __name__ == "__main__":
    exit_now(main())
