"""``python -m benchmarks.vs_official``: the kit against the official code, side by side, in one interleaved run.

    python -m benchmarks.vs_official                                   # both parts, 3 rounds, B100
    python -m benchmarks.vs_official --parts complexity --rounds 5 --json vs_official.json
    python -m benchmarks.vs_official --official_kit ~/NTIRE2023_ESR   # time the kit's own model_summary.py
    python -m benchmarks.vs_official --quick                           # smoke test: one model, 2 images, 1 round

Two ratios, kit / official, each the median wall time (and peak RSS) over ``--rounds`` runs:

(a) complexity: ``python -m benchmarks --complexity_only`` over the five entries (MLRN-entire with its
    model_zoo weights, the four baselines with their official weights from the shared folder) against
    ``benchmarks/official_reference.py complexity`` on the same models: per model the parameter sum,
    ``get_model_flops``, ``get_model_activation`` and fvcore's ``FlopCountAnalysis(...).total()``, as the
    official kits count. Target <= 1.0x.
(b) test_demo: ``python test_demo.py --data_dir B100 --model_id RFDN --weights <official RFDN>`` with the
    kit's default flags against ``benchmarks/official_reference.py testdemo`` (the 2023 kit's loop: cv2
    read, ``uint2tensor4``, timed forward, ``tensor2uint``, RGB PSNR, SR PNG saved, the kit's counts,
    results.json written). Target <= 1.5x.

Every run is a fresh subprocess (imports count, as a user pays them), kit and official alternating, so
a machine whose load changes during the run slows both sides alike. Both sides must agree on what
they measured: the same counts for every model, the same mean PSNR; a difference is reported and
the exit code is 1. The official side is a stand-in written from ``reference/OFFICIAL_KITS.md`` unless
``--official_kit DIR`` gives a checkout of an official kit (then its ``utils/model_summary.py`` is
timed); the output says which.
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

from esrkit.atomic import atomic_write, check_writable_file
from esrkit.cli import EXIT_FAILED, EXIT_OK, run_guarded
from esrkit.errors import KitError
from esrkit.paths import REPO_ROOT, SHARED_ENV, shared_path

PARTS = ("complexity", "testdemo")
TARGETS = {"complexity": 1.0, "testdemo": 1.5}
# The five entries of the efficiency report, each with the weights both sides load ("-": the kit's model_zoo file).
ENTRIES = {"MLRN-entire": "-", "RFDN": "rfdn_ntire2023_team00.pth", "RLFN": "rlfn_ntire2024_team00.pth",
           "EFDN": "efdn_ntire2025_team00.pth", "IMDN": "imdn_ntire2022_baseline.pth"}
QUICK_ENTRIES = ("RLFN",)  # the cheapest baseline to count
QUICK_IMAGES = ("img_001", "img_002")
TESTDEMO_ENTRY = "RFDN"
COUNT_KEYS = ("params", "flops_official", "activations", "num_conv", "flops_fvcore")
PSNR_TOLERANCE_DB = 1e-9  # both sides quantise to uint8 and average float64 PSNRs: they must agree exactly


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
                   help="a checkout of an official NTIRE ESR kit: time its utils/model_summary.py instead of the stand-in")
    p.add_argument("--quick", action="store_true", help="a tiny run for a smoke test: one model, two images, one round")
    p.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        raise KitError(f"--rounds {args.rounds}: give at least 1")
    # The sides run from the repository root: paths are made absolute first.
    args.data_dir = args.data_dir.resolve() if args.data_dir is not None else None
    args.official_kit = args.official_kit.resolve() if args.official_kit is not None else None
    if args.official_kit is not None and not (args.official_kit / "utils" / "model_summary.py").is_file():
        raise KitError(f"--official_kit {args.official_kit}: no utils/model_summary.py there "
                       f"(give a checkout of an official NTIRE ESR kit, e.g. ofsoundof/NTIRE2023_ESR)")
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


def complexity_commands(entries: Sequence[str], official_kit: Path | None, out: Path) -> tuple[list[str], list[str]]:
    """The kit's complexity report and the official-style counting, on the same entries and weights."""
    weights = [ENTRIES[e] if ENTRIES[e] == "-" else str(weights_file(ENTRIES[e])) for e in entries]
    kit = [sys.executable, "-m", "benchmarks", "--complexity_only", "--model_id", *entries, "--weights", *weights,
           "--quiet", "--json", str(out)]
    official = [sys.executable, "-m", "benchmarks.official_reference", "complexity", "--model_id", *entries,
                "--weights", *weights, *(["--official_kit", str(official_kit)] if official_kit else [])]
    return kit, official


def testdemo_commands(data_dir: Path, kit_dir: Path, official_dir: Path) -> tuple[list[str], list[str]]:
    """The kit's test_demo.py with its default flags, and the official-style loop, each into its own folder."""
    weights = str(weights_file(ENTRIES[TESTDEMO_ENTRY]))
    kit = [sys.executable, "test_demo.py", "--data_dir", str(data_dir), "--model_id", TESTDEMO_ENTRY,
           "--weights", weights, "--results_dir", str(kit_dir), "--save_dir", str(kit_dir / "sr")]
    official = [sys.executable, "-m", "benchmarks.official_reference", "testdemo", "--data_dir", str(data_dir),
                "--weights", weights, "--results_dir", str(official_dir), "--save_dir", str(official_dir / "sr")]
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


def mean_psnr(results_dir: Path) -> float:
    entries = json.loads((results_dir / "results.json").read_text())
    (record,) = entries.values()  # each side writes into a fresh folder: one entry
    return float(record["valid_ave_psnr"])


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
    if args.quick:
        data_dir = quick_folder(data_dir, work / "data")
    entries = QUICK_ENTRIES if args.quick else tuple(ENTRIES)
    parts: dict[str, Part] = {}
    for r in range(args.rounds):
        for name in args.parts:
            rd = work / f"{name}{r}"
            rd.mkdir()
            if name == "complexity":
                kit, official = complexity_commands(entries, args.official_kit, rd / "kit_counts.json")
            else:
                kit, official = testdemo_commands(data_dir, rd / "kit", rd / "official")
            part = parts.setdefault(name, Part(name, Side(shell_text(kit)), Side(shell_text(official))))
            print(f"round {r + 1}/{args.rounds}: {name} kit ...", end=" ", flush=True)
            part.kit.samples.append(run_measured(kit, rd / "kit.log"))
            print(f"{part.kit.samples[-1].wall_s:.1f} s; official ...", end=" ", flush=True)
            part.official.samples.append(run_measured(official, rd / "official.log"))
            print(f"{part.official.samples[-1].wall_s:.1f} s", flush=True)
            if name == "complexity":
                part.disagreements += compare_counts(rd / "kit_counts.json", rd / "official.log")
            else:
                kit_psnr, official_psnr = mean_psnr(rd / "kit"), mean_psnr(rd / "official")
                if abs(kit_psnr - official_psnr) > PSNR_TOLERANCE_DB:
                    part.disagreements.append(f"mean PSNR: kit {kit_psnr!r} vs official {official_psnr!r}")
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


def report(parts: list[Part], args: argparse.Namespace, info: dict[str, str], load_before: str, load_after: str) -> str:
    official = (f"the official kit's utils/model_summary.py ({args.official_kit})" if args.official_kit
                else "stand-ins written from OFFICIAL_KITS.md (benchmarks/official_reference.py)")
    lines = [f"vs_official: kit / official, {args.rounds} interleaved round(s){', --quick' if args.quick else ''}",
             f"machine: {info['cpu']}; python {info['python']}, torch {info['torch']}; {info['date']}",
             f"load average (1/5/15 min) before {load_before}, after {load_after}",
             f"official side: {official}",
             *(["--quick: a smoke test of the benchmark (one model, two images); its ratios are not the figures "
                "of record"] if args.quick else []), ""]
    for part in parts:
        met = "met" if part.wall_ratio <= part.target else "NOT met"
        lines += [f"({part.name})",
                  f"  kit:      {part.kit.command}",
                  f"  official: {part.official.command}",
                  f"  wall [s]   kit {', '.join(f'{s.wall_s:.1f}' for s in part.kit.samples)} (median "
                  f"{part.kit.median_wall_s:.1f}); official {', '.join(f'{s.wall_s:.1f}' for s in part.official.samples)} "
                  f"(median {part.official.median_wall_s:.1f})",
                  f"  peak RSS   kit {part.kit.median_rss_mib:.0f} MiB; official {part.official.median_rss_mib:.0f} MiB "
                  f"(medians) -> {part.rss_ratio:.2f}x",
                  f"  RATIO {part.name}: {part.wall_ratio:.2f}x wall (target <= {part.target:.1f}x: {met})",
                  "  both sides agree: " + ("yes" if not part.disagreements else "NO: " + "; ".join(part.disagreements)),
                  ""]
    return "\n".join(lines)


def figures(parts: list[Part], args: argparse.Namespace, info: dict[str, str], load_before: str, load_after: str) -> dict:
    return {"machine": info, "load_before": load_before, "load_after": load_after, "rounds": args.rounds,
            "quick": args.quick, "official_kit": str(args.official_kit) if args.official_kit else None,
            "parts": {p.name: {"kit": asdict(p.kit), "official": asdict(p.official), "wall_ratio": p.wall_ratio,
                               "rss_ratio": p.rss_ratio, "target": p.target, "target_met": p.wall_ratio <= p.target,
                               "disagreements": p.disagreements} for p in parts}}


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        args = parse_args(argv)
        if args.json is not None:
            check_writable_file(args.json, "--json")
        info, load_before = machine(), load()
        with tempfile.TemporaryDirectory(prefix="vs_official_") as tmp:
            parts = run_parts(args, Path(tmp))
        load_after = load()
        print("\n" + report(parts, args, info, load_before, load_after))
        if args.json is not None:
            atomic_write(args.json, json.dumps(figures(parts, args, info, load_before, load_after), indent=2) + "\n")
        return EXIT_FAILED if any(p.disagreements for p in parts) else EXIT_OK

    return run_guarded(body, "nothing was written")


if __name__ == "__main__":
    sys.exit(main())
