"""``python -m benchmarks.vs_official``: the kit against the official NTIRE 2023 ESR kit's own code, side by side,
in one interleaved run, on the CPU.

    python -m benchmarks.vs_official                                   # both parts, 3 rounds, B100
    python -m benchmarks.vs_official --record benchmarks/results       # ... and write the record (.md + .json)
    python -m benchmarks.vs_official --parts complexity --rounds 5
    python -m benchmarks.vs_official --official_kit ~/NTIRE2023_ESR   # another checkout of the official kit
    python -m benchmarks.vs_official --quick                           # smoke test: one model, 2 images, 1 round

The official side is the official kit's own code, unmodified: by default the shared folder's copy
(``reference/official_kit_ntire2023``), or the checkout ``--official_kit DIR`` names. Two ratios, kit /
official, each the median wall time (and peak RSS) over ``--rounds`` runs:

(a) complexity: ``python -m benchmarks --complexity_only`` over the five entries (MLRN-entire with its
    model_zoo weights, the four baselines with their official weights from the shared folder) against
    ``python -m benchmarks.official_cpu complexity`` on the same networks: per model the parameter sum, the
    official ``utils/model_summary.py``'s ``get_model_flops`` and ``get_model_activation``, and fvcore's
    ``FlopCountAnalysis(...).total()`` (the 2024-2025 kits' counter). Target <= 0.8x.
(b) test_demo: ``python test_demo.py --data_dir D --model_id RFDN --weights <official RFDN> --device cpu`` with
    the kit's default flags otherwise, against the official ``test_demo.py`` run on the CPU by
    ``python -m benchmarks.official_cpu test_demo`` (its CUDA calls substituted at run time, listed there), both
    on ``D``: B100 linked once into the DIV2K 2023 layout the official code reads (its 100 images are
    DIV2K's 0801-0900). Target <= 1.15x.

Every run is a fresh subprocess (imports count, as a user pays them), kit and official alternating, so
a machine whose load changes during the run slows both sides alike. Both sides must agree on what
they measured, in every round: the same counts for every model; for test_demo the same PSNR on every image
and the same four counts. A difference is reported and the exit code is 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Sequence

from benchmarks.official_cpu import check_official_kit, default_official_kit, link_div2k_2023
from esrkit.atomic import check_writable_folder, replace_together
from esrkit.cli import EXIT_FAILED, EXIT_OK, run_guarded
from esrkit.errors import KitError
from esrkit.paths import REPO_ROOT, SHARED_ENV, shared_path

PARTS = ("complexity", "testdemo")
TARGETS = {"complexity": 0.8, "testdemo": 1.15}
# The five entries of the efficiency report, each with the weights both sides load ("-": the kit's model_zoo file).
ENTRIES = {"MLRN-entire": "-", "RFDN": "rfdn_ntire2023_team00.pth", "RLFN": "rlfn_ntire2024_team00.pth",
           "EFDN": "efdn_ntire2025_team00.pth", "IMDN": "imdn_ntire2022_baseline.pth"}
QUICK_ENTRIES = ("RLFN",)  # the cheapest baseline to count
QUICK_IMAGES = ("img_001", "img_002")
TESTDEMO_ENTRY = "RFDN"
COUNT_KEYS = ("params", "flops_official", "activations", "num_conv", "flops_fvcore")
TESTDEMO_KEYS = ("valid_psnr", "num_parameters", "flops", "activations", "num_conv")  # in both results.json: equal
OFFICIAL_FILES = ("test_demo.py", "utils/model_summary.py")


@dataclass
class Sample:
    """One subprocess: its wall time [s] and peak resident memory [MiB]."""

    wall_s: float
    peak_rss_mib: float


@dataclass
class Side:
    """One side of a part: its command (as run in round 1) and its samples."""

    command: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def median_wall_s(self) -> float:
        return statistics.median(s.wall_s for s in self.samples)

    @property
    def median_rss_mib(self) -> float:
        return statistics.median(s.peak_rss_mib for s in self.samples)


@dataclass
class Part:
    """Kit against official on one task, with what the two sides measured (they must agree)."""

    name: str
    title: str  # what was run, for the record's table
    kit: Side
    official: Side
    disagreements: list[str] = field(default_factory=list)

    @property
    def wall_ratio(self) -> float:
        return self.kit.median_wall_s / self.official.median_wall_s

    @property
    def rss_ratio(self) -> float:
        return self.kit.median_rss_mib / self.official.median_rss_mib

    @property
    def target(self) -> float:
        return TARGETS[self.name]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.vs_official", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, default=None,
                   help="benchmark-layout folder for the test_demo part (HR/, LR_bicubic/X4/; default: shared B100)")
    p.add_argument("--rounds", type=int, default=None, help="runs of each side per part, interleaved (default 3; 1 with --quick)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to compare (default: both)")
    p.add_argument("--official_kit", type=Path, default=None,
                   help="the official NTIRE 2023 ESR kit's folder (default: the shared folder's copy, "
                        "reference/official_kit_ntire2023)")
    p.add_argument("--quick", action="store_true", help="a tiny run for a smoke test: one model, two images, one round")
    p.add_argument("--record", type=Path, default=None,
                   help="write the record into this folder: vs_official_cpu_DATE.md and .json "
                        "(e.g. benchmarks/results)")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        raise KitError(f"--rounds {args.rounds}: give at least 1")
    # The sides run from the repository root: paths are made absolute first.
    args.data_dir = args.data_dir.resolve() if args.data_dir is not None else None
    args.official_kit = check_official_kit((args.official_kit or default_official_kit()).resolve(), *OFFICIAL_FILES)
    return args


# --- running one side ---------------------------------------------------------------------------------


def run_measured(command: list[str], log: Path) -> Sample:
    """Run ``command`` from the repository root, its output into ``log``; its wall time and peak RSS.

    A failing run stops the benchmark with its last line of output (the kit's ``error: ...`` line)."""
    with log.open("wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own peak RSS, which Popen.wait does not give
        wall = time.perf_counter() - start
    process.returncode = returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
        raise KitError(f"{' '.join(command[1:4])} ... exited with {returncode}: {lines[-1]}")
    return Sample(wall, usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux


def shell_text(command: list[str]) -> str:
    """The command as a user would type it (``python`` for this interpreter)."""
    return " ".join(["python", *command[1:]])


# --- the two parts --------------------------------------------------------------------------------------


def weights_file(name: str) -> Path:
    path = shared_path("weights", name)
    if not path.is_file():
        raise KitError(f"{path} is missing: the official baseline weights are read from the shared folder "
                       f"(set {SHARED_ENV} to it)")
    return path


def complexity_commands(entries: Sequence[str], official_kit: Path, out: Path) -> tuple[list[str], list[str]]:
    """The kit's complexity report and the official counting, on the same entries and weights."""
    weights = [ENTRIES[e] if ENTRIES[e] == "-" else str(weights_file(ENTRIES[e])) for e in entries]
    kit = [sys.executable, "-m", "benchmarks", "--complexity_only", "--model_id", *entries, "--weights", *weights,
           "--quiet", "--json", str(out)]
    official = [sys.executable, "-m", "benchmarks.official_cpu", "complexity", "--official_kit", str(official_kit),
                "--model_id", *entries, "--weights", *weights]
    return kit, official


def testdemo_commands(div2k_dir: Path, official_kit: Path, kit_dir: Path,
                      official_dir: Path) -> tuple[list[str], list[str]]:
    """The kit's test_demo.py with its default flags but the CPU, and the official test_demo.py on the CPU, on the
    same DIV2K 2023 folder, each into its own folder."""
    weights = str(weights_file(ENTRIES[TESTDEMO_ENTRY]))
    kit = [sys.executable, "test_demo.py", "--data_dir", str(div2k_dir), "--model_id", TESTDEMO_ENTRY,
           "--weights", weights, "--device", "cpu", "--results_dir", str(kit_dir), "--save_dir", str(kit_dir / "sr")]
    official = [sys.executable, "-m", "benchmarks.official_cpu", "test_demo", "--official_kit", str(official_kit),
                "--data_dir", str(div2k_dir), "--weights", weights, "--run_dir", str(official_dir),
                "--save_dir", str(official_dir / "sr")]
    return kit, official


def compare_counts(kit_json: Path, official_log: Path) -> list[str]:
    """Differences between the kit's counts (its --json) and the official side's (the JSON line it printed)."""
    kit_rows = json.loads(kit_json.read_text())
    printed = [ln for ln in official_log.read_text().splitlines() if ln.startswith('{"hook_counters"')]
    official_rows = json.loads(printed[-1])["rows"]
    if [k["entry"] for k in kit_rows] != [o["entry"] for o in official_rows]:
        return [f"entries: kit {[k['entry'] for k in kit_rows]} vs official {[o['entry'] for o in official_rows]}"]
    return [f"{o['entry']} {key}: kit {k[key]} vs official {o[key]}"
            for k, o in zip(kit_rows, official_rows) for key in COUNT_KEYS if k[key] != o[key]]


def only_record(results_dir: Path) -> dict:
    entries = json.loads((results_dir / "results.json").read_text())
    (record,) = entries.values()  # each side writes into a fresh folder: one entry
    return record


def compare_testdemo(kit_dir: Path, official_dir: Path) -> list[str]:
    """Differences between the two results.json files: every image's PSNR and the four counts, exactly."""
    kit, official = only_record(kit_dir), only_record(official_dir)
    return [f"{key}: kit {kit.get(key)!r} vs official {official.get(key)!r}"
            for key in TESTDEMO_KEYS if kit.get(key) != official.get(key)]


def quick_folder(source: Path, root: Path) -> Path:
    """A benchmark-layout copy of two images of ``source``."""
    for sub, suffix in (("HR", ""), (os.path.join("LR_bicubic", "X4"), "x4")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name in QUICK_IMAGES:
            shutil.copy(source / sub / f"{name}{suffix}.png", root / sub / f"{name}{suffix}.png")
    return root


def check_benchmark_layout(data_dir: Path) -> Path:
    if not (data_dir / "HR").is_dir() or not (data_dir / "LR_bicubic" / "X4").is_dir():
        raise KitError(f"--data_dir {data_dir}: not a benchmark-layout folder (HR/ and LR_bicubic/X4/); "
                       f"give one such as {shared_path('data', 'benchmarks', 'B100')}")
    return data_dir


def run_parts(args: argparse.Namespace, work: Path) -> list[Part]:
    """Every round: for each part the kit, then the official side; the two sides' results compared."""
    data_dir = check_benchmark_layout(args.data_dir or shared_path("data", "benchmarks", "B100"))
    source = data_dir.name
    if args.quick:
        data_dir = quick_folder(data_dir, work / "data")
    div2k_dir = work / "div2k_2023"
    images = len(link_div2k_2023(data_dir, div2k_dir))  # both test_demo sides read this one folder
    entries = QUICK_ENTRIES if args.quick else tuple(ENTRIES)
    titles = {"complexity": f"counting, {', '.join(entries)} (the baselines with their official weights)",
              "testdemo": f"`test_demo.py` defaults, RFDN on {source} ({images} images), SR images saved"}
    parts: dict[str, Part] = {}
    for r in range(args.rounds):
        for name in args.parts:
            rd = work / f"{name}{r}"
            rd.mkdir()
            if name == "complexity":
                kit, official = complexity_commands(entries, args.official_kit, rd / "kit_counts.json")
            else:
                kit, official = testdemo_commands(div2k_dir, args.official_kit, rd / "kit", rd / "official")
            part = parts.setdefault(name, Part(name, titles[name], Side(shell_text(kit)), Side(shell_text(official))))
            print(f"round {r + 1}/{args.rounds}: {name} kit ...", end=" ", flush=True)
            part.kit.samples.append(run_measured(kit, rd / "kit.log"))
            print(f"{part.kit.samples[-1].wall_s:.1f} s; official ...", end=" ", flush=True)
            part.official.samples.append(run_measured(official, rd / "official.log"))
            print(f"{part.official.samples[-1].wall_s:.1f} s", flush=True)
            if name == "complexity":
                part.disagreements += compare_counts(rd / "kit_counts.json", rd / "official.log")
            else:
                part.disagreements += compare_testdemo(rd / "kit", rd / "official")
    return list(parts.values())


# --- the report ------------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return {"cpu": f"{cpu_name()} ({os.cpu_count()} logical cores)", "python": platform.python_version(),
            "torch": torch_version, "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def official_side(args: argparse.Namespace) -> str:
    return (f"the official NTIRE 2023 ESR kit's own code in {args.official_kit}: its test_demo.py run on the CPU by "
            f"benchmarks/official_cpu.py (its CUDA calls substituted at run time, listed there), its "
            f"utils/model_summary.py for counting")


def report(parts: list[Part], args: argparse.Namespace, info: dict[str, str], load_before: str, load_after: str) -> str:
    lines = [f"vs_official: kit / official, {args.rounds} interleaved round(s){', --quick' if args.quick else ''}",
             f"machine: {info['cpu']}; python {info['python']}, torch {info['torch']}; {info['date']}",
             f"load average (1/5/15 min) before {load_before}, after {load_after}",
             f"official side: {official_side(args)}",
             *(["--quick: a smoke test of the benchmark (one model, two images); its ratios are not the figures "
                "of record"] if args.quick else []), ""]
    for part in parts:
        lines += [f"({part.name})",
                  f"  kit:      {part.kit.command}",
                  f"  official: {part.official.command}",
                  f"  wall [s]   kit {', '.join(f'{s.wall_s:.1f}' for s in part.kit.samples)} (median "
                  f"{part.kit.median_wall_s:.1f}); official {', '.join(f'{s.wall_s:.1f}' for s in part.official.samples)} "
                  f"(median {part.official.median_wall_s:.1f})",
                  f"  peak RSS   kit {part.kit.median_rss_mib:.0f} MiB; official {part.official.median_rss_mib:.0f} MiB "
                  f"(medians) -> {part.rss_ratio:.2f}x",
                  f"  RATIO {part.name}: {part.wall_ratio:.2f}x wall (target <= {part.target:g}x: {met(part)})",
                  "  both sides agree: " + ("yes" if not part.disagreements else "NO: " + "; ".join(part.disagreements)),
                  ""]
    return "\n".join(lines)


def met(part: Part) -> str:
    return "met" if part.wall_ratio <= part.target else "NOT met"


def markdown(parts: list[Part], args: argparse.Namespace, command: str, info: dict[str, str], load_before: str,
             load_after: str) -> str:
    """The record: what ran, where, the two ratios and whether both sides agreed."""
    lines = [f"# The kit against the official NTIRE 2023 ESR kit, CPU, {info['date'][:10]}", "",
             f"Command: `{command}` ({args.rounds} interleaved round(s), each side a fresh process), on {info['cpu']}; "
             f"Python {info['python']}, torch {info['torch']}; {info['date']}; load average (1/5/15 min) "
             f"{load_before} before, {load_after} after. The official side is {official_side(args)}.", ""]
    if args.quick:
        lines += ["**--quick: a smoke test of the benchmark (one model, two images, one round); its ratios are not "
                  "the figures of record.**", ""]
    lines += ["| part | kit (median wall, peak RSS) | official | kit / official | target |",
              "|---|---:|---:|---:|---|"]
    for part in parts:
        lines.append(f"| {part.title} | {part.kit.median_wall_s:.1f} s, {part.kit.median_rss_mib:.0f} MiB | "
                     f"{part.official.median_wall_s:.1f} s, {part.official.median_rss_mib:.0f} MiB | "
                     f"**{part.wall_ratio:.2f}x** | <= {part.target:g}x: {met(part)} |")
    lines.append("")
    for part in parts:
        agree = ("the same in every round" if not part.disagreements
                 else "DIFFERENT: " + "; ".join(part.disagreements))
        lines += [f"({part.name}) kit: `{part.kit.command}`; official: `{part.official.command}`. What both sides "
                  f"measured: {agree}.", ""]
    return "\n".join(lines)


def figures(parts: list[Part], args: argparse.Namespace, info: dict[str, str], load_before: str, load_after: str) -> dict:
    return {"machine": info, "load_before": load_before, "load_after": load_after, "rounds": args.rounds,
            "quick": args.quick, "official_kit": str(args.official_kit), "official_side": official_side(args),
            "parts": {p.name: {"kit": asdict(p.kit), "official": asdict(p.official), "wall_ratio": p.wall_ratio,
                               "rss_ratio": p.rss_ratio, "target": p.target, "target_met": p.wall_ratio <= p.target,
                               "disagreements": p.disagreements} for p in parts}}


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        args = parse_args(argv)
        if args.record is not None:
            check_writable_folder(args.record, "--record")
        info, load_before = machine(), load()
        with tempfile.TemporaryDirectory(prefix="vs_official_") as tmp:
            parts = run_parts(args, Path(tmp))
        load_after = load()
        print("\n" + report(parts, args, info, load_before, load_after))
        if args.record is not None:
            stem = args.record / f"vs_official_cpu_{info['date'][:10]}{'_quick' if args.quick else ''}"
            command = " ".join(["python -m benchmarks.vs_official", *(sys.argv[1:] if argv is None else argv)])
            replace_together({
                stem.with_suffix(".md"): markdown(parts, args, command, info, load_before, load_after),
                stem.with_suffix(".json"):
                    json.dumps(figures(parts, args, info, load_before, load_after), indent=2) + "\n",
            })
            print(f"record: {stem}.md and {stem}.json")
        return EXIT_FAILED if any(p.disagreements for p in parts) else EXIT_OK

    return run_guarded(body, "nothing was written")


if __name__ == "__main__":
    sys.exit(main())
