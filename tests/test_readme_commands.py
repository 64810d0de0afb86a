"""The README's shell commands run as written from a fresh clone (issue 29, item 8).

A newcomer's run of the README found commands that worked only from the checkout's folder (`No module named
esrkit` elsewhere: the setup never installed the kit), an efficiency report that failed after 83 s of measuring
(no baseline weights), and a spec whose weights file was not the shared folder's. Here the README is run as a
newcomer runs it: a copy of the checkout (the files git tracks or would track: what a clone holds, plus work not
yet committed) in a temporary folder, the shared folder beside it as ``../shared`` (and ``ESRKIT_SHARED`` naming
it), the setup done there (a virtual environment and ``pip install -e .`` from the copy), and then the README's
commands -- every command line of its ```bash blocks, run by bash from the copy's folder, ``python`` being that
environment's, ``PYTHONPATH`` unset.

Every command is in RUN (the test here that runs it) or in NOT_RUN (why not, and the test that runs the same code
path on the shared data); a command added to the README in neither fails the completeness test until it is placed.
Commands run as written except for the substitutions in SUBSTITUTED, each with its reason: the network the setup
needs, and data cut to one small image where a README command as written measures for minutes. Commands run on
one torch thread (``OMP_NUM_THREADS=1``: the suite shares two cores).

Runtime on this project's CPU machine (Intel Xeon, 2 cores, 2026-12-07), measured while other work ran: 74 s wall
at load average 2-3 (65 s of CPU time), 112 s at load average 4-5.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from esrkit.paths import REPO_ROOT, SHARED_ENV
from tests.conftest import BENCHMARKS, SHARED, copy_benchmark, require

TIMEOUT_S = 300
ONE_IMAGE = "../Set5_img_003"  # beside the copy: Set5's img_003 alone (64x64 LR), benchmark layout
SET5 = "../shared/data/benchmarks/Set5"
# params and fvcore FLOPs of the spec's entries as published: the teams' by the official 2025 code
# (submissions/README.md), EFDN's in the official kit (weights/README.md, reference/baselines_complexity.csv).
PUBLISHED_COUNTS = {"07_NanoSR": (550_992, 36_021_731_328), "08_FRnet": (211_572, 13_854_738_432),
                    "17_FSANet": (308_776, 19_750_653_440), "EFDN": (276_192, 16_703_470_848)}

# The README's commands run here, by the start of their text -> the test of this file that runs them.
RUN = {
    "pip install torch==2.13.0 && pip install -r requirements.txt && pip install -e .": "fresh_clone (fixture)",
    "python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --model_file": "test_a_team_by_flags_and_by_the_spec",
    "python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --spec teams.toml --team 17":
        "test_a_team_by_flags_and_by_the_spec",
    "python -m esrkit.submission scoring-program --out runs/scoring_program.zip --year 2025":
        "test_the_kit_works_from_any_folder",
    "python -m esrkit.submission scoring-program --out runs/scoring_program.zip --ssim": "test_the_scoring_trial",
    "python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --save_dir runs/sr": "test_the_scoring_trial",
    "unzip -o runs/scoring_program.zip": "test_the_scoring_trial",
    "python3 runs/scoring_program/score.py": "test_the_scoring_trial",
    "python -m benchmarks --spec teams.toml --complexity_only": "test_the_efficiency_reports",
    "mkdir -p runs && cat > runs/teams.toml <<'SPEC'": "test_the_verify_trials_spec",
    "python -m esrkit.submission export --model_id MLRN-entire --team 23": "test_export_and_package",
    "python -m esrkit.submission package --model_file runs/my_submission": "test_export_and_package",
}

# The README's commands not run here: why, and the test that runs the same code path on the shared data.
NOT_RUN = {
    "python3 -m venv .venv && . .venv/bin/activate": (
        "makes the environment the suite runs in; fresh_clone makes its own (`python -m venv`, see SUBSTITUTED)",
        ".ci/run (a fresh venv from a fresh clone on every CI run)"),
    "python -m pytest": ("the suite itself", ".ci/run"),
    "python -m benchmarks --model_id MLRN-entire RLFN EFDN": (
        "the full report over three entries and a data folder (about 25 s here); the same outputs, each kind, are "
        "written from the same code by the tests named",
        "tests/test_benchmarks_cli.py::test_full_report_on_cpu (--markdown --csv --plot --json --latex) and "
        "tests/test_benchmarks_cli.py::test_the_html_report_is_the_results_page (--data_dir --html)"),
    "python test_demo.py ": (  # the first command of the Quick start: no arguments
        "the same main([]) runs in-process on the demo photos (here 20 s more)",
        "tests/test_demo_default.py::test_default_run_uses_trained_weights_on_the_demo_set"),
    "python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --model_id RFDN": (
        "the same command line, on Set5 linked into the DIV2K 2023 layout, runs beside the official kit",
        "tests/test_official_kit.py::test_the_kits_test_demo_gives_the_official_test_demos_figures_and_pixels"),
    "python -m esrkit.submission batch --spec teams.toml --data_dir DIV2K_LSDIR": (
        "needs the round's DIV2K_LSDIR validation folder; one process per team (minutes)",
        "tests/test_intake.py::test_each_team_in_its_own_process_gives_the_same_entries (the five shared teams, Set5)"),
    "python -m esrkit.submission batch --models_dir ../shared/submissions/models --data_dir DIV2K_LSDIR": (
        "needs the round's DIV2K_LSDIR validation folder",
        "tests/test_intake.py::test_a_folder_batch_names_the_spec_key_and_the_command_that_writes_a_spec and "
        "tests/test_intake.py::test_team15_loads_without_a_spec (the shared folder's five files, no spec)"),
    "python -m esrkit.submission spec --from_select_model NTIRE2025_ESR/test_demo.py --out teams.toml": (
        "needs a checkout of the official NTIRE 2025 kit",
        "tests/test_select_model.py::test_2025_command_writes_a_spec_that_loads (an official-style select_model "
        "beside the shared submissions)"),
    "python -m esrkit.submission spec --from_select_model NTIRE2025_ESR/test_demo.py --teams 7 8 17": (
        "needs a checkout of the official NTIRE 2025 kit",
        "tests/test_select_model.py::test_command_prints_to_stdout_with_absolute_paths"),
    "python -m esrkit.submission batch --spec teams.toml --data_dir DIV2K_LSDIR --results_dir intake/ --devices all": (
        "needs GPUs and the round's DIV2K_LSDIR", "tests/test_batch_parallel.py::test_workers_give_the_sequential_figures"),
    "python -m esrkit.submission batch ... --devices cuda:0,cuda:2": (
        "elided (`...`); needs GPUs", "tests/test_batch_parallel.py::test_workers_give_the_sequential_figures"),
    "python -m esrkit.submission batch ... --workers 4": (
        "elided (`...`)", "tests/test_batch_parallel.py::test_workers_give_the_sequential_figures"),
    "python -m esrkit.submission batch ... --shard 2/4": (
        "elided (`...`)", "tests/test_batch_parallel.py::test_two_shards_then_merge_give_the_sequential_entries"),
    "python -m esrkit.submission merge intake/shard1/results.json": (
        "its inputs are the shards' batches on DIV2K_LSDIR",
        "tests/test_batch_parallel.py::test_two_shards_then_merge_give_the_sequential_entries"),
    "#!/bin/bash": ("the sbatch script: needs a Slurm cluster",
                    "tests/test_slurm.py::test_the_readmes_sbatch_array_on_a_real_slurm_gives_the_sequential_figures "
                    "(this block, submitted to a one-node Slurm)"),
    "python -m esrkit.submission merge intake/shard_*/results.json": (
        "its inputs are a Slurm array's shards", "tests/test_batch_parallel.py::"
                                                 "test_two_shards_then_merge_give_the_sequential_entries"),
    "for team in 7 8 10 15 17; do": (
        "packages the five real teams' SR images of Set5: minutes here",
        "tests/test_verify.py::test_a_teams_own_package_zip_passes_as_identical (package, then verify, on Set5)"),
    "python -m esrkit.submission verify --spec runs/teams.toml --team 7 --upload runs/uploads/team7.zip": (
        "its input is the loop's upload; reproduces NanoSR on Set5, confined",
        "tests/test_verify.py::test_a_teams_own_package_zip_passes_as_identical"),
    "python -m esrkit.submission verify --spec runs/teams.toml --team 7 --upload runs/uploads/team17.zip": (
        "as above", "tests/test_verify.py::test_another_teams_model_is_different_with_every_image_named"),
    "cp runs/uploads/team17.zip runs/uploads/team8.zip && rm runs/uploads/team15.zip": (
        "its inputs are the loop's uploads", "tests/test_verify.py::test_batch_writes_each_teams_verdict_into_its_entry"),
    "python -m esrkit.submission batch --spec runs/teams.toml --data_dir ../shared/data/benchmarks/Set5": (
        "measures and reproduces the five real teams on Set5, one process each: minutes here",
        "tests/test_verify.py::test_batch_writes_each_teams_verdict_into_its_entry (three teams, two Set5 images)"),
    "python -m benchmarks --baseline_weights": (
        "the default report measures 339x510 inputs for seconds per entry (about a minute here)",
        "tests/test_benchmarks_cli.py::test_full_report_on_cpu (the same report, one 256x256 input)"),
    "python -m benchmarks --model_id RLFN EFDN --complexity_only --untrained": (
        "the same path on two other entries runs there",
        "tests/test_benchmarks_cli.py::test_complexity_only_names_every_counter"),
    "python -m benchmarks.vs_official ": (
        "3 rounds of the kit and the official kit on B100: minutes (the lead's measurement)",
        "tests/test_vs_official.py::test_quick_run_prints_and_records_both_ratios"),
    "python -m benchmarks.vs_official --record benchmarks/results": (
        "writes a dated record into the tracked tree (the lead's measurement)",
        "tests/test_vs_official.py::test_quick_run_prints_and_records_both_ratios"),
    "python -m benchmarks.vs_official --quick": (
        "the same command (--quick, recorded into a temporary folder) runs there",
        "tests/test_vs_official.py::test_quick_run_prints_and_records_both_ratios"),
    "python -m esrkit.submission check --model_file runs/my_submission/models/team23_MLRN.py": (
        "its interleaved runtime rule on the demo photos takes 40 s here",
        "tests/test_submission.py::test_good_entry_passes_every_rule (every rule, a team file against RFDN on Set5)"),
}

# What a run here changes in a README command, and why: {start: ((old, new), ..., reason)}.
SUBSTITUTED = {
    "pip install torch==2.13.0 && pip install -r requirements.txt && pip install -e .": (
        ("pip install torch==2.13.0 && pip install -r requirements.txt && pip install -e .",
         "python -m pip install -e . --no-deps --no-build-isolation --no-index --quiet"),
        "no network here: torch and requirements.txt are the running environment's (fresh_clone's venv reaches its "
        "packages), and so is the build backend"),
    "python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --model_file": (
        (SET5, ONE_IMAGE), "FSANet on the five Set5 images takes 40 s here; on one, a few"),
    "python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --spec teams.toml --team 17": (
        (SET5, ONE_IMAGE), "as above"),
}


def complete(command: str) -> bool:
    """Whether bash reads ``command`` as whole: no loop, quote or here-document left open."""
    done = subprocess.run(["bash", "-n"], input=command, capture_output=True, text=True)
    return done.returncode == 0 and "here-document" not in done.stderr


def readme_commands() -> list[str]:
    """Every command of the README's ```bash blocks as bash reads them: a line (continuations joined), or the lines
    of a loop or a here-document together; comment lines between commands dropped. An executable script (``#!``)
    is one command."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        if block.startswith("#!"):
            commands.append(block)
            continue
        pending: list[str] = []
        for line in block.replace("\\\n", " ").splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending.append(line)
            if complete("\n".join(pending)):
                commands.append("\n".join(pending).strip())
                pending = []
        assert not pending, f"README: a command bash does not read as whole: {pending}"
    return commands


def plan_of(command: str) -> str:
    """The one start of RUN or NOT_RUN ``command`` begins with (the longest, so that a start may prefix another)."""
    starts = [s for s in (*RUN, *NOT_RUN) if (command + " ").startswith(s)]
    assert starts, f"README command in neither RUN nor NOT_RUN of {__file__}: {command}"
    return max(starts, key=len)


def readme_command(start: str) -> str:
    """The README's command of that start, with its substitutions made."""
    (command,) = [c for c in readme_commands() if plan_of(c) == start]
    *replacements, _reason = SUBSTITUTED.get(start, ("",))
    for old, new in replacements:
        assert old in command, f"the substitution {old!r} no longer applies to: {command}"
        command = command.replace(old, new)
    return command


def test_every_readme_command_is_run_here_or_covered_by_a_named_test() -> None:
    commands = readme_commands()
    planned = [plan_of(c) for c in commands]
    assert len(commands) >= 30  # the blocks are read
    assert sorted(planned) == sorted({*RUN, *NOT_RUN}), "a start matches no README command, or several"
    assert set(SUBSTITUTED) <= set(RUN)
    for start, (reason, covered_by) in NOT_RUN.items():
        assert reason and covered_by, start
        for name in re.findall(r"(tests/\w+\.py)::(\w+)", covered_by):
            source = (REPO_ROOT / name[0]).read_text(encoding="utf-8")
            assert f"def {name[1]}(" in source, f"{start}: {name[0]} has no test {name[1]}"
    this = Path(__file__).read_text(encoding="utf-8")
    for start, test in RUN.items():
        assert f"def {test.split(' ')[0]}(" in this, start


# --- the fresh clone ---------------------------------------------------------------------------------


def clone_files() -> list[str]:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the files a clone holds are git's to say")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()]


class Clone:
    """The copy, its environment, and how to run a command in it as the README's reader would."""

    def __init__(self, root: Path) -> None:
        self.root, self.checkout, self.venv = root, root / "esrkit", root / "venv"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self.env.update(PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(self.venv),
                        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ESRKIT_LOG_DIR=str(root / "logs"),
                        **{SHARED_ENV: str(root / "shared")})

    def run(self, command: str, cwd: Path | None = None, expect: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run(["bash", "-c", command], cwd=cwd or self.checkout, env=self.env, capture_output=True,
                              text=True, timeout=TIMEOUT_S)
        out = done.stdout + done.stderr
        assert done.returncode in expect, f"exit {done.returncode}: {command}\n{out[-4000:]}"
        return out

    def results(self, folder: str = ".") -> dict:
        return json.loads((self.checkout / folder / "results.json").read_text())


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    """The checkout copied, ``../shared`` beside it, the README's setup done in it (SUBSTITUTED says how)."""
    require(BENCHMARKS)
    root = tmp_path_factory.mktemp("fresh")
    clone = Clone(root)
    for name in clone_files():
        (clone.checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, clone.checkout / name)
    (root / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    copy_benchmark(root / ONE_IMAGE[3:], BENCHMARKS / "Set5", ("img_003",))
    # `python3 -m venv .venv`, offline: an environment whose site-packages reach the running one's packages.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone.venv)], check=True)
    (purelib,) = clone.venv.glob("lib/python3*/site-packages")
    (purelib / "_running_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    clone.run(readme_command("pip install torch==2.13.0 && pip install -r requirements.txt && pip install -e ."))
    yield clone


def test_the_kit_works_from_any_folder(fresh_clone: Clone) -> None:
    """The newcomer's `No module named esrkit`: after the setup, the kit, its registered entries and its model zoo
    are found from a folder outside the checkout, and a README command runs there as written."""
    elsewhere = fresh_clone.root / "elsewhere"
    elsewhere.mkdir()
    shown = fresh_clone.run("python -c 'import esrkit, esrkit.paths, esrkit.registry as r; e = r.get_entry(\"MLRN-entire\"); "
                            "print(esrkit.__file__, e.default_weights_path(), e.has_default_weights(), "
                            "[x.name for x in r.list_entries()])'", cwd=elsewhere)
    assert f"{fresh_clone.checkout / 'esrkit' / '__init__.py'} {fresh_clone.checkout / 'model_zoo'}" in shown, shown
    assert "mlrn_entire_x4.pth True" in shown and "'RFDN', 'RLFN', 'EFDN', 'IMDN', 'MLRN-entire'" in shown, shown
    fresh_clone.run(readme_command("python -m esrkit.submission scoring-program --out runs/scoring_program.zip --year 2025"),
                    cwd=elsewhere)
    assert (elsewhere / "runs" / "scoring_program.zip").is_file()


def readme_spec() -> str:
    """The spec of the README's "Organisers" section (its ```toml block), which the README saves as teams.toml."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (spec,) = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[[team]]" in b]
    return spec


def test_a_team_by_flags_and_by_the_spec(fresh_clone: Clone) -> None:
    """NTIRE 2025's team 17 by the README's flags, then by its spec (saved as the README says): the same entry,
    its published params and fvcore FLOPs, and img_003's PSNR of the official 2025 code (submissions/README.md,
    another CPU: within 1e-3 dB)."""
    (fresh_clone.checkout / "teams.toml").write_text(readme_spec())
    fresh_clone.run(readme_command("python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --model_file"))
    by_flags = fresh_clone.results()["17_FSANet"]
    fresh_clone.run(readme_command("python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --spec teams.toml --team 17"))
    by_spec = fresh_clone.results()["17_FSANet"]
    assert (round(by_flags["num_parameters"] * 1e6), round(by_flags["flops_fvcore"] * 1e9)) == PUBLISHED_COUNTS["17_FSANet"]
    assert abs(by_flags["valid_psnr"][0] - 27.318028) <= 1e-3
    assert by_spec["flops"] == by_flags["flops_fvcore"]  # the spec's year = 2025: fvcore's FLOPs under `flops`
    for key in ("num_parameters", "flops_hook", "flops_fvcore", "activations", "num_conv", "valid_psnr", "entry"):
        assert by_spec[key] == by_flags[key], key


def test_the_scoring_trial(fresh_clone: Clone) -> None:
    """The online phase's trial as written, on the whole of Set5: the scorer's PSNR is the kit's, and the README's
    figure (two torch threads there, one here: within 1e-5 dB)."""
    for start in ("python -m esrkit.submission scoring-program --out runs/scoring_program.zip --ssim",
                  "python test_demo.py --data_dir ../shared/data/benchmarks/Set5 --save_dir runs/sr",
                  "unzip -o runs/scoring_program.zip", "python3 runs/scoring_program/score.py"):
        command = readme_command(start)
        if command.startswith("unzip") and shutil.which("unzip") is None:
            command = "python -m zipfile -e runs/scoring_program.zip runs/scoring_program"  # what unzip does here
        fresh_clone.run(command)
    scores = dict(line.split(": ") for line in (fresh_clone.checkout / "runs/scores/scores.txt").read_text().splitlines())
    kit = fresh_clone.results("runs")["10_MLRN-entire"]
    assert float(scores["valid_ave_psnr"]) == kit["valid_ave_psnr"]
    assert float(scores["valid_ave_ssim"]) == pytest.approx(kit["valid_ave_ssim"], abs=1e-9)
    readme = re.search(r"scores.txt: valid_ave_psnr: ([\d.]+)", (REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    assert readme and abs(float(readme.group(1)) - kit["valid_ave_psnr"]) <= 1e-5


def test_the_efficiency_reports(fresh_clone: Clone) -> None:
    """The counts of the README's spec (every table of it loads: the baseline's weights are the shared file), less
    team 17, whose counts test_a_team_by_flags_and_by_the_spec checks (its count is the slowest); the full report:
    NOT_RUN."""
    tables = readme_spec().split("[[team]]")
    (fresh_clone.checkout / "counts.toml").write_text("[[team]]".join(t for t in tables if "team = 17\n" not in t))
    fresh_clone.run(readme_command("python -m benchmarks --spec teams.toml --complexity_only")
                    .replace("--spec teams.toml", "--spec counts.toml"))
    counts = {row["entry"]: (row["params"], row["flops_fvcore"])
              for row in json.loads((fresh_clone.checkout / "runs/counts.json").read_text())}
    assert counts == {k: v for k, v in PUBLISHED_COUNTS.items() if k != "17_FSANet"}


def test_the_verify_trials_spec(fresh_clone: Clone) -> None:
    """The trial of `verify` writes its spec with a here-document; every table of it resolves, from the clone, to
    the shared submission it names (the rest of the trial: NOT_RUN)."""
    from esrkit.spec import load_spec_file, resolve

    fresh_clone.run(readme_command("mkdir -p runs && cat > runs/teams.toml <<'SPEC'"))
    spec = load_spec_file(fresh_clone.checkout / "runs/teams.toml")
    assert spec.year == 2025 and not spec.invalid and [t.team for t in spec.teams] == [7, 8, 10, 15, 17]
    for team in spec.teams:
        entry = resolve(team)
        assert entry.source.resolve().parent == (SHARED / "submissions" / "models").resolve(), entry.source
        assert entry.weights_path().is_file()


def test_export_and_package(fresh_clone: Clone) -> None:
    """The submission's export and its upload zip, into runs/ as the README says (check: NOT_RUN)."""
    fresh_clone.run(readme_command("python -m esrkit.submission export --model_id MLRN-entire --team 23"))
    exported = fresh_clone.checkout / "runs/my_submission"
    assert (exported / "models/team23_MLRN.py").is_file() and (exported / "model_zoo/team23_mlrn.pth").is_file()
    fresh_clone.run(readme_command("python -m esrkit.submission package --model_file runs/my_submission"))
    assert (fresh_clone.checkout / "runs/team23.zip").is_file()
