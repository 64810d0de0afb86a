"""``python -m benchmarks.batch_cost``: what the organisers' batch costs per team -- the kit now (each team's code
confined in its sandbox) against an earlier commit of the kit (unconfined, as it was) -- on the README's eight-entry
Set5 batch, in one interleaved run on this machine.

    python -m benchmarks.batch_cost                                  # 3 rounds against ca2e8cb
    python -m benchmarks.batch_cost --rounds 5 --record benchmarks/results
    python -m benchmarks.batch_cost --baseline_commit HEAD~3 --quick # smoke test: two entries, one image, one round

The batch: the five NTIRE 2025 submissions of the shared folder (as the organisers built them), EFDN and RFDN with
their official weights, and MLRN-entire with its model_zoo weights, on Set5, ``--device cpu`` and the command's
defaults otherwise -- the same flags on both sides. The earlier kit is the commit's tree (``git archive``) run with
this interpreter, from its own folder. Every run is a fresh process into a fresh results folder, the two sides
alternating, medians compared; both sides must measure the same figures (every count and every image's PSNR of
every entry), else the exit code is 1.

Beside the ratio, where the time went: per entry, the time from the previous entry's result line to its own (the
first also carries the batch's start), and the batch's start and end; and with ``--profile`` each side's phases
for one entry process (imports, building and loading, counting, the Set5 pass, the process's exit), on the CPU
without the batch around it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from benchmarks.vs_official import load, machine, weights_file
from esrkit.atomic import check_writable_folder, replace_together
from esrkit.cli import EXIT_FAILED, EXIT_OK, run_guarded
from esrkit.errors import KitError
from esrkit.paths import REPO_ROOT, shared_path
from esrkit.tomltext import toml_value

DEFAULT_BASELINE = "ca2e8cb"
TARGET = 0.6
TEAMS = (  # (table) the five NTIRE 2025 submissions as the organisers built them (shared/submissions/README.md)
    dict(team=7, model_file="team07_NanoSR.py", class_name="NanoSR_inference", init_args=[3, 3]),
    dict(team=8, model_file="team08_FRnet.py", class_name="FRnet", state_key="params_ema", strict=False),
    dict(team=10, model_file="team10_MoeASR.py", class_name="MixtureofAttention_Multiply",
         init_kwargs=dict(dim=36, kernel_size=7, num_experts=3, topk=1, scale=4, num_blocks=9),
         weights="team10_MoASR.pth", state_key="params_ema"),
    dict(team=15, model_file="team15_DIPNet_slim_v2.py", class_name="DIPNet_slim_v2", init_args=[3, 3],
         init_kwargs=dict(upscale=4, feature_channels=32)),
    dict(team=17, name="FSANet", model_file="team17_FSANet_arch.py", class_name="FSANet",
         init_kwargs=dict(fea_ch=56, conv="EPartialBSConvU", rgb_mean=[0.4488, 0.4371, 0.404], channel_reduction_rate=2,
                          bias=False), weights="team17_FSANet.pth", state_key="params", post_load="each:switch_deploy"),
)
ENTRIES = {"EFDN": "efdn_ntire2025_team00.pth", "RFDN": "rfdn_ntire2023_team00.pth", "MLRN-entire": None}
QUICK = (7, "EFDN")
# How an entry ran, not what it measured; and complexity_input_dependent, whose second values changed by design: the
# second probe became a real LR photo (it was seeded noise, which a branch on the input's mean cannot tell apart).
FIGURES_SKIPPED = ("date", "confined", "environment", "data_dir", "complexity_probe", "weights",
                   "complexity_input_dependent")


def spec_text(quick: bool) -> str:
    """The README's eight-entry batch as a spec (paths into the shared folder)."""
    submissions = shared_path("submissions")
    if not (submissions / "models").is_dir():
        raise KitError(f"{submissions} is missing: the batch is the shared folder's NTIRE 2025 submissions")
    text = "year = 2025\n\n"
    for team in TEAMS:
        if quick and team["team"] not in QUICK:
            continue
        table = dict(team)
        table["model_file"] = str(submissions / "models" / table["model_file"])
        if "weights" in table:
            table["weights"] = str(submissions / "model_zoo" / table["weights"])
        table["data_range"] = 1.0
        text += "[[team]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items()) + "\n"
    for entry, weights in ENTRIES.items():
        if quick and entry not in QUICK:
            continue
        text += f'[[team]]\nentry = "{entry}"\n' + (f'weights = "{weights_file(weights)}"\n' if weights else "") + "\n"
    return text


@dataclass
class Run:
    """One batch: its wall time, and when each entry's result line came (seconds from the start)."""

    wall_s: float
    lines: dict[str, float] = field(default_factory=dict)
    end_s: float = 0.0  # the last result line


@dataclass
class Side:
    name: str
    command: str
    runs: list[Run] = field(default_factory=list)

    @property
    def median_wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    def per_entry(self) -> dict[str, float]:
        """Median time from the previous entry's line to each entry's (the first: from the batch's start)."""
        keys = list(self.runs[0].lines)
        spans: dict[str, list[float]] = {k: [] for k in keys}
        for run in self.runs:
            previous = 0.0
            for key in keys:
                at = run.lines.get(key, previous)
                spans[key].append(at - previous)
                previous = at
        return {k: statistics.median(v) for k, v in spans.items()}

    def tail_s(self) -> float:
        """Median time from the last entry's line to the end (the table, the results page)."""
        return statistics.median(r.wall_s - r.end_s for r in self.runs)


def run_batch(kit: Path, spec: Path, data: Path, out: Path) -> Run:
    """The batch command of the kit in ``kit`` (its own folder, this interpreter), its result lines timed."""
    command = [sys.executable, "-m", "esrkit.submission", "batch", "--spec", str(spec), "--data_dir", str(data),
               "--results_dir", str(out), "--device", "cpu", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=kit, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    run = Run(0.0)
    tail: list[str] = []

    def read_out() -> None:
        tail.extend(process.stdout.read().splitlines())  # type: ignore[union-attr]

    reader = threading.Thread(target=read_out)
    reader.start()
    for line in process.stderr:  # type: ignore[union-attr]
        key, sep, rest = line.rstrip().partition(": ")
        if sep and not key.startswith(("[", "warning", "note")) and rest.split(" ")[0] in ("ok", "failed"):
            run.lines[key] = run.end_s = time.perf_counter() - start
        tail.append(line.rstrip())
    process.wait()
    reader.join()
    run.wall_s = time.perf_counter() - start
    if process.returncode != 0:
        raise KitError(f"the batch of {kit} exited with {process.returncode}: {(tail or ['(no output)'])[-1]}")
    return run


def figures(results: Path) -> dict[str, dict]:
    """Every entry's figures but the timings and what says how it ran."""
    data = json.loads(results.read_text())
    return {key: {k: v for k, v in entry.items() if "runtime" not in k and not k.endswith("_wall_s")
                  and k not in FIGURES_SKIPPED} for key, entry in data.items()}


def disagreements(a: dict[str, dict], b: dict[str, dict]) -> list[str]:
    if set(a) != set(b):
        return [f"entries: {sorted(a)} vs {sorted(b)}"]
    return [f"{key} {k}" for key in a for k in sorted(set(a[key]) | set(b[key]))
            if k in a[key] and k in b[key] and a[key][k] != b[key][k]]


PROFILE = r'''
import os, sys, time, json
t0 = time.perf_counter(); c0 = time.process_time()
marks = []
def mark(what):
    global t0, c0
    marks.append((what, time.perf_counter() - t0, time.process_time() - c0)); t0 = time.perf_counter(); c0 = time.process_time()
import torch; import esrkit.run, esrkit.results, esrkit.spec; mark("imports")
from pathlib import Path
from esrkit.spec import load_spec_file, resolve
from esrkit.datasets import open_split
from esrkit.api import count
from esrkit.device import prepare_model
from esrkit.evaluation import Evaluator
from esrkit.metrics import selected
spec = load_spec_file(Path(sys.argv[1])).teams[int(sys.argv[2])]
split = open_split(Path(sys.argv[3]), "valid", "auto")
entry = resolve(spec)
cpu = torch.device("cpu")
with entry.running_on(cpu):
    loaded = entry.load(None); mark("build, load")
    count(loaded.model); mark("count")
    ev = Evaluator(prepare_model(loaded.model, cpu), scale=entry.scale, data_range=entry.data_range, device=cpu)
    ev.run(split); mark("Set5 pass")
print(json.dumps([entry.name, marks]), flush=True)
'''


def profile(kit: Path, spec: Path, data: Path, entries: int) -> list[tuple[str, list[tuple[str, float, float]], float]]:
    """Per entry: its phases (name, wall, CPU) in a fresh process of the kit in ``kit``, and the process's exit."""
    found = []
    for index in range(entries):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROFILE, str(spec), str(index), str(data)], cwd=kit,
                              capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                    if k != "PYTHONPATH"} | {"PYTHONPATH": str(kit)})
        total = time.perf_counter() - start
        if done.returncode != 0:
            raise KitError(f"profiling entry {index} in {kit} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        name, marks = json.loads(done.stdout.strip().splitlines()[-1])
        found.append((name, marks, total - sum(m[1] for m in marks)))
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline_commit", default=DEFAULT_BASELINE, help=f"the earlier kit (default {DEFAULT_BASELINE})")
    p.add_argument("--rounds", type=int, default=None, help="batches per side, interleaved (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke test: two entries, one round")
    p.add_argument("--profile", action="store_true", help="also each side's phases per entry, one process each")
    p.add_argument("--record", type=Path, default=None, help="write batch_cost_cpu_DATE.md and .json into this folder")
    args = p.parse_args(argv)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if args.rounds < 1:
        raise KitError(f"--rounds {args.rounds}: give at least 1")
    if args.record is not None:
        check_writable_folder(args.record, "--record")
    return args


def baseline_tree(commit: str, into: Path) -> Path:
    """The commit's tree, as files (``git archive``), in ``into``."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit], capture_output=True)
    if archive.returncode != 0:
        raise KitError(f"--baseline_commit {commit}: git archive failed ({archive.stderr.decode().strip()}); give a "
                       f"commit of this repository")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(lambda: _main(parse_args(argv)))


def _main(args: argparse.Namespace) -> int:
    data = shared_path("data", "benchmarks", "Set5")
    if not data.is_dir():
        raise KitError(f"{data} is missing: the batch runs on the shared folder's Set5")
    with tempfile.TemporaryDirectory(prefix="batch_cost_") as tmp:
        work = Path(tmp)
        spec = work / "teams.toml"
        spec.write_text(spec_text(args.quick))
        base = Side("earlier", f"ca2e8cb-style batch from {args.baseline_commit}")
        now = Side("now", "this checkout's batch (confined)")
        sides = ((base, baseline_tree(args.baseline_commit, work / "baseline")), (now, REPO_ROOT))
        loads = [load()]
        problems: list[str] = []
        for r in range(args.rounds):
            found = {}
            for side, kit in sides:
                out = work / f"{side.name}{r}"
                print(f"round {r + 1}/{args.rounds}: {side.name} ...", end=" ", flush=True)
                side.runs.append(run_batch(kit, spec, data, out))
                print(f"{side.runs[-1].wall_s:.1f} s", flush=True)
                found[side.name] = figures(out / "results.json")
            problems += disagreements(found["earlier"], found["now"])
            loads.append(load())
        profiles = ({side.name: profile(kit, spec, data, len(side.runs[0].lines)) for side, kit in sides}
                    if args.profile else {})
        text = report(args, base, now, loads, problems, profiles)
        print(text)
        if args.record is not None:
            write_record(args, text, base, now, loads, problems, profiles)
    return EXIT_OK if not problems else EXIT_FAILED


def report(args: argparse.Namespace, base: Side, now: Side, loads: list[str], problems: list[str],
           profiles: dict) -> str:
    info = machine()
    ratio = now.median_wall_s / base.median_wall_s
    lines = [f"batch_cost: the README's {'two' if args.quick else 'eight'}-entry Set5 batch, {args.rounds} interleaved "
             f"round(s), --device cpu", f"machine: {info['cpu']}; python {info['python']}, torch {info['torch']}; "
             f"{info['date']}", f"load average (1/5/15 min): {' -> '.join(loads)}", "",
             f"earlier ({args.baseline_commit}, unconfined): {', '.join(f'{r.wall_s:.1f}' for r in base.runs)} s "
             f"(median {base.median_wall_s:.1f})",
             f"now (confined):          {', '.join(f'{r.wall_s:.1f}' for r in now.runs)} s "
             f"(median {now.median_wall_s:.1f})",
             f"RATIO now / earlier: {ratio:.2f}x (target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})",
             "both sides measured the same figures: " + ("yes" if not problems else "NO: " + "; ".join(problems[:10])),
             "", "per entry, median seconds from the previous entry's result line (the first: from the start):",
             f"  {'entry':22s} {'earlier':>8s} {'now':>8s}"]
    b, n = base.per_entry(), now.per_entry()
    for key in b:
        lines.append(f"  {key:22s} {b[key]:8.2f} {n.get(key, float('nan')):8.2f}")
    lines.append(f"  {'(table, page: the end)':22s} {base.tail_s():8.2f} {now.tail_s():8.2f}")
    for name, found in profiles.items():
        lines += ["", f"phases of one entry process, {name} kit (wall s / CPU s):"]
        for entry, marks, exit_s in found:
            lines.append(f"  {entry:18s} " + "; ".join(f"{m} {w:.2f}/{c:.2f}" for m, w, c in marks)
                         + f"; exit {exit_s:.2f}")
    return "\n".join(lines)


def write_record(args: argparse.Namespace, text: str, base: Side, now: Side, loads: list[str], problems: list[str],
                 profiles: dict) -> None:
    info = machine()
    stem = f"batch_cost_cpu_{info['date'][:10]}{'_quick' if args.quick else ''}"
    command = "python -m benchmarks.batch_cost " + " ".join(sys.argv[1:])
    md = "\n".join([f"# The organisers' batch per team: confined now against {args.baseline_commit}, CPU, "
                    f"{info['date'][:10]}", "", f"Command: `{command}`.", "", "```", text, "```", ""])
    data = {"command": command, "machine": info, "loads": loads, "baseline_commit": args.baseline_commit,
            "earlier": asdict(base), "now": asdict(now), "ratio": now.median_wall_s / base.median_wall_s,
            "target": TARGET, "disagreements": problems, "profiles": profiles}
    replace_together({args.record / f"{stem}.md": md, args.record / f"{stem}.json": json.dumps(data, indent=2) + "\n"})
    print(f"record: {args.record / stem}.md and .json")


if __name__ == "__main__":
    sys.exit(main())
