"""Submission kit: ``check`` (every rule; each bad fixture fails with its reason) and ``package`` (zip, readme, factsheet).

Fixtures live in tmp_path: a 2-image benchmark-layout copy of Set5, and team folders (``models/`` +
``model_zoo/``) holding model files the tests write, with official weights linked, never copied.
The good entry is RLFN as one self-contained file generated from the kit's own source, checked
against RFDN: on Set5 img_004 + img_005 it scores 29.59 dB vs RFDN's 29.55 dB with 0.73x the
params and FLOPs. The runtime rule is judged on fixed timings (``steady_clock``), so no test depends
on how busy the machine is; torch runs on one thread here, since oversubscribed threads on the two
shared cores make every forward pass many times slower.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import torch

from esrkit.challenge import YEARS
from esrkit.datasets import ImagePair, Split, open_split
from esrkit.errors import KitError
from esrkit.imageio import read_rgb
from esrkit.registry import get_entry, list_entries
from esrkit.spec import TeamSpec, resolve
from esrkit.submission import check as check_module
from esrkit.submission import layout, package
from esrkit.submission.__main__ import main
from esrkit.submission.check import Submission
from esrkit.submission.report import Status
from models import esa, rlfn
from tests.conftest import torch_threads

IMAGES = ("img_004", "img_005")
RULES = [
    "file name", "weights file name", "single file (imports)", "scale", "model", "weights load",
    "forward 3x256x256", "forward 3x339x510 (DIV2K LR)", "deterministic", "data range", "params", "FLOPs",
    "runtime", "PSNR valid",
]
README_RE = re.compile(
    r"runtime per image \[s\] : \d+\.\d{6}\n"
    r"CPU\[1\] / GPU\[0\] : [01]\n"
    r"Extra Data \[1\] / No Extra Data \[0\] : [01]\n"
    r"Other description : [^\n]*\n"
)

TINY = '''import torch
from torch import nn


class {name}(nn.Module):
    """A 1x1 conv, then nearest upsampling by ``factor``."""

    def __init__(self, factor: int = {factor}) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.up = nn.Upsample(scale_factor=factor, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return {expr}
'''
TINY_STATE = {"conv.weight": torch.eye(3).view(3, 3, 1, 1)}


REAL_TIME_INTERLEAVED = check_module.time_interleaved
STEADY_MS = {"candidate": 7.3, "baseline": 10.0}  # per image: the candidate at 0.73x, as RLFN/RFDN in FLOPs


@pytest.fixture(autouse=True)
def steady_clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The runtime rule judged on fixed timings: unit tests never depend on how busy the machine is.
    (``time_interleaved`` itself is tested on its own below; speed is measured in benchmarks.)"""
    ms = dict(STEADY_MS)

    def steady(evaluators, split, device, runs):  # noqa: ANN001, ARG001
        return [[ms["candidate"]] * len(split), [ms["baseline"]] * len(split)]

    monkeypatch.setattr(check_module, "time_interleaved", steady)
    return ms


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def set5(tmp_path_factory: pytest.TempPathFactory, benchmarks_dir: Path) -> Path:
    """Set5 img_004 and img_005 in the benchmark layout."""
    root = tmp_path_factory.mktemp("set5")
    for sub, suffix in (("HR", ""), ("LR_bicubic/X4", "x4")):
        (root / sub).mkdir(parents=True)
        for name in IMAGES:
            shutil.copy(benchmarks_dir / "Set5" / sub / f"{name}{suffix}.png", root / sub / f"{name}{suffix}.png")
    return root


@pytest.fixture(scope="module")
def weights(official_weights_dir: Path) -> dict[str, Path]:
    return {"RFDN": official_weights_dir / "rfdn_ntire2023_team00.pth",
            "RLFN": official_weights_dir / "rlfn_ntire2024_team00.pth"}


def rlfn_single_file(register: bool) -> str:
    """RLFN as one self-contained file, generated from the kit's own source (models/esa.py + models/rlfn.py)."""
    parts = ["import torch\nimport torch.nn.functional as F\nfrom torch import nn\n",
             f"NEGATIVE_SLOPE = {rlfn.NEGATIVE_SLOPE!r}\n"]
    parts += [inspect.getsource(obj) for obj in (rlfn._conv, esa.RLFNESA, rlfn.RLFB, rlfn.RLFN)]
    if register:
        parts.append('from esrkit.registry import register_entry\n\n\n'
                     '@register_entry("RLFN", 0, scale=4, data_range=255.0, weights="team00_rlfn.pth")\n'
                     'def team00_rlfn() -> RLFN:\n    return RLFN()\n')
    return "\n\n".join(parts)


def team_folder(root: Path, file_name: str, source: str, weights_name: str | None = None,
                state: dict[str, torch.Tensor] | None = None, link: Path | None = None) -> Path:
    """Write ``models/<file_name>`` and, if named, ``model_zoo/<weights_name>`` (saved ``state`` or a link)."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    path = root / "models" / file_name
    path.write_text(source)
    if weights_name is not None:
        (root / "model_zoo").mkdir(exist_ok=True)
        target = root / "model_zoo" / weights_name
        if link is not None:
            target.symlink_to(link)
        else:
            torch.save(state, target)
    return path


UNCONFINED_WARNING = "warning: the team's code ran UNCONFINED (--unconfined), with your rights"


def said(err: str) -> list[str]:
    """What stderr says beyond progress (off a terminal every step is a plain line): errors, warnings, notes -- but the
    warning of ``--unconfined``, which :func:`check_args` passes on purpose."""
    return [line for line in err.splitlines() if line.startswith(("error", "warning", "note", "internal", "Traceback"))
            and line != UNCONFINED_WARNING]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def table(out: str) -> dict[str, tuple[str, str]]:
    """rule -> (status, reason) from the printed table."""
    rows = {}
    for line in out.splitlines():
        cells = re.split(r"\s{2,}", line, maxsplit=2)
        if len(cells) == 3 and cells[1] in ("PASS", "FAIL", "SKIP"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def check_args(model_file: Path, set5: Path, baseline: str, baseline_weights: Path, *extra: str) -> list[str]:
    """check on a team's file, in this process (``--unconfined``: the rules are judged here, where the runtime rule's
    clock is steadied; ``tests/test_confinement.py`` runs check confined)."""
    return ["check", "--model_file", str(model_file), "--data_dir", str(set5), "--baseline", baseline,
            "--baseline_weights", str(baseline_weights), "--device", "cpu", "--runs", "2", "--unconfined", *extra]


@pytest.fixture(scope="module")
def good_team(tmp_path_factory: pytest.TempPathFactory, weights: dict[str, Path]) -> Path:
    """models/team00_RLFN.py registering its entry, model_zoo/team00_rlfn.pth linked to the official file."""
    root = tmp_path_factory.mktemp("good")
    return team_folder(root, "team00_RLFN.py", rlfn_single_file(register=True), "team00_rlfn.pth", link=weights["RLFN"])


# --- check: the good entry --------------------------------------------------------------------


def test_good_entry_passes_every_rule(good_team, set5, weights, capsys) -> None:
    rc, out, err = run_cli(capsys, *check_args(good_team, set5, "RFDN", weights["RFDN"]))
    rows = table(out)
    assert list(rows) == RULES
    assert {rule: status for rule, (status, _) in rows.items()} == dict.fromkeys(RULES, "PASS"), out
    assert rc == 0 and said(err) == []
    assert "PASS: 14 passed, 0 failed, 0 not run, of 14 rules" in out
    assert rows["data range"][1].startswith("255 confirmed")
    assert "317,218 vs RFDN 433,448" in rows["params"][1]
    assert "19.70 G vs 27.10 G by the 2023 counter (official hooks)" in rows["FLOPs"][1]
    assert "29.59 dB vs RFDN 29.55 dB on the same 2 images" in rows["PSNR valid"][1]
    print(out)  # the table, for the record (pytest -s)


def test_a_slower_candidate_fails_the_runtime_rule(good_team, set5, weights, capsys, steady_clock) -> None:
    steady_clock["candidate"] = 12.0
    rc, out, _ = run_cli(capsys, *check_args(good_team, set5, "RFDN", weights["RFDN"]))
    status, reason = table(out)["runtime"]
    assert rc == 1 and status == "FAIL" and reason.startswith("1.20x the baseline (12.00 vs RFDN 10.00 ms per image")


def test_time_interleaved_alternates_the_models_on_every_image(set5) -> None:
    calls: list[tuple[str, float]] = []

    def evaluator(tag: str, data_range: float) -> SimpleNamespace:
        def forward(x: torch.Tensor) -> torch.Tensor:
            calls.append((tag, float(x.max())))
            return x
        return SimpleNamespace(forward=forward, scale=4, data_range=data_range)

    split = open_split(set5)
    medians = REAL_TIME_INTERLEAVED([evaluator("a", 255.0), evaluator("b", 1.0)], split, torch.device("cpu"), 2)
    assert [tag for tag, _ in calls] == ["a", "b"] * 3 * len(split)  # one warm-up + 2 timed runs per image, alternating
    assert all((peak > 1.0) == (tag == "a") for tag, peak in calls)  # each model gets its own data range
    assert [len(m) for m in medians] == [len(split), len(split)] and all(ms > 0 for m in medians for ms in m)


def test_year_changes_the_flops_counter(weights) -> None:
    """2023 counts FLOPs with the official hooks, 2024 with fvcore (RLFN 19.70 / 19.67 G, RFDN 27.10 / 27.05 G)."""
    ours = check_module.count(get_entry("RLFN").load(weights["RLFN"]).model)
    theirs = check_module.count(get_entry("RFDN").load(weights["RFDN"]).model)
    for year, expected in ((2023, "19.70 G vs 27.10 G by the 2023 counter (official hooks)"),
                           (2024, "19.67 G vs 27.05 G by the 2024 counter (fvcore)")):
        params, flops = check_module.complexity_rules(YEARS[year], ours, theirs, "RFDN")
        assert params.passed and flops.passed and flops.reason.startswith(expected)
    bigger = check_module.complexity_rules(YEARS[2025], theirs, ours, "RLFN")
    assert [r.status for r in bigger] == [Status.FAIL, Status.FAIL]
    assert bigger[0].reason == "433,448 vs RLFN 317,218 (1.37x; must be <= 1.00x)"


# --- check: each bad fixture fails with its reason --------------------------------------------


def test_wrong_data_range_fails_and_names_the_right_one(tmp_path, set5, weights, capsys) -> None:
    """RLFN's 255 weights in a bare-module file declared as 1.0."""
    path = team_folder(tmp_path, "team00_RLFN.py", rlfn_single_file(register=False), "team00_rlfn.pth",
                       link=weights["RLFN"])
    rc, out, _ = run_cli(capsys, *check_args(path, set5, "RFDN", weights["RFDN"], "--data_range", "1.0"))
    rows = table(out)
    assert rc == 1
    status, reason = rows["data range"]
    assert status == "FAIL" and "declared 1 but the outputs fit 255" in reason and "set data_range=255" in reason
    assert rows["model"] == ("PASS", "RLFN() from team00_RLFN.py")
    for rule in ("file name", "weights file name", "single file (imports)", "weights load",
                 "forward 3x256x256", "forward 3x339x510 (DIV2K LR)", "params", "FLOPs", "runtime"):
        assert rows[rule][0] == "PASS", (rule, rows[rule])
    assert rows["PSNR valid"][0] == "FAIL"  # what the organisers would measure with the wrong range


def test_undeclared_data_range_is_detected(set5, weights) -> None:
    model = get_entry("RLFN").load(weights["RLFN"]).model
    pair = open_split(set5).pairs[1]
    result, detected = check_module.check_data_range(model, pair, 4, None, torch.device("cpu"))
    assert result.status is Status.FAIL and detected == 255.0
    assert result.reason.startswith("not declared; the outputs fit 255") and "pass --data_range 255" in result.reason


def test_wrongly_named_file_fails(tmp_path, set5, weights, capsys) -> None:
    path = team_folder(tmp_path, "team1_Tiny.py", TINY.format(name="Tiny", factor=4, expr="self.up(self.conv(x))"),
                       "team1_tiny.pth", state=TINY_STATE)
    rc, out, _ = run_cli(capsys, *check_args(path, set5, "RLFN", weights["RLFN"]))
    rows = table(out)
    assert rc == 1
    assert rows["file name"][0] == "FAIL"
    assert "team1_Tiny.py is not named teamNN_Name.py (the team id has exactly two digits)" in rows["file name"][1]
    for rule in ("weights file name", "single file (imports)", "weights load", "forward 3x256x256"):
        assert rows[rule][0] == "PASS", (rule, rows[rule])


def test_strict_false_only_checkpoint_fails(tmp_path, set5, weights, capsys) -> None:
    """Missing and unexpected keys: a checkpoint that only a strict=False load would accept."""
    state = {"head.weight": torch.eye(3).view(3, 3, 1, 1), "tail.bias": torch.zeros(3)}
    path = team_folder(tmp_path, "team02_Tiny.py", TINY.format(name="Tiny", factor=4, expr="self.up(self.conv(x))"),
                       "team02_tiny.pth", state=state)
    rc, out, _ = run_cli(capsys, *check_args(path, set5, "RLFN", weights["RLFN"], "--data_range", "255"))
    rows = table(out)
    assert rc == 1
    status, reason = rows["weights load"]
    assert status == "FAIL"
    assert "1 missing: conv.weight" in reason and "2 unexpected: head.weight, tail.bias" in reason
    assert all(rows[r] == ("SKIP", "not run: the weights did not load") for r in RULES[RULES.index("forward 3x256x256"):])


def test_wrong_output_size_fails(tmp_path, set5, weights, capsys) -> None:
    path = team_folder(tmp_path, "team03_Half.py", TINY.format(name="Half", factor=2, expr="self.up(self.conv(x))"),
                       "team03_half.pth", state=TINY_STATE)
    rc, out, _ = run_cli(capsys, *check_args(path, set5, "RLFN", weights["RLFN"], "--data_range", "255"))
    rows = table(out)
    assert rc == 1
    assert rows["forward 3x256x256"] == (
        "FAIL", "output (1, 3, 512, 512) for input (1, 3, 256, 256); x4 needs (1, 3, 1024, 1024)")
    assert rows["forward 3x339x510 (DIV2K LR)"][0] == "FAIL"
    assert rows["runtime"] == ("SKIP", "not run: the model's output is not a valid x4 image")


def test_nan_output_fails(tmp_path, set5, weights, capsys) -> None:
    """NaN on the random probes and on the images: the forward rules fail, the counts are still reported."""
    path = team_folder(tmp_path, "team04_Broken.py",
                       TINY.format(name="Broken", factor=4, expr="self.up(self.conv(x)) * float('nan')"),
                       "team04_broken.pth", state=TINY_STATE)
    rc, out, _ = run_cli(capsys, *check_args(path, set5, "RLFN", weights["RLFN"], "--data_range", "255"))
    rows = table(out)
    assert rc == 1
    assert rows["forward 3x256x256"] == ("FAIL", "(1, 3, 256, 256) -> (1, 3, 1024, 1024); 3145728 NaN and 0 Inf values "
                                                 "of 3145728 on this random probe; not finite on the images either")
    assert rows["forward 3x339x510 (DIV2K LR)"][0] == "FAIL"
    assert rows["params"] == ("PASS", "9 vs RLFN 317,218 (0.00x; must be <= 1.00x)")
    assert rows["FLOPs"][0] == "PASS"
    for rule in ("runtime", "PSNR valid"):
        status, reason = rows[rule]
        assert status == "FAIL" and "gave 235200 non-finite value(s) (NaN/Inf) on img_004" in reason
    assert rows["data range"][0] == "FAIL" and "neither range gives a sane PSNR" in rows["data range"][1]
    assert "FAIL: 9 passed, 5 failed, 0 not run, of 14 rules" in out


def test_model_that_fails_on_real_images_fails_with_the_reason(tmp_path, set5, weights, capsys) -> None:
    """Fine on the 256x256 and 339x510 probes, raises on Set5's small images: reasons, not a traceback."""
    expr = "self.up(self.conv(x)) if min(x.shape[-2:]) >= 100 else x.new_zeros(1).view(2, 2)"
    path = team_folder(tmp_path, "team06_Picky.py", TINY.format(name="Picky", factor=4, expr=expr),
                       "team06_picky.pth", state=TINY_STATE)
    rc, out, _ = run_cli(capsys, *check_args(path, set5, "RLFN", weights["RLFN"], "--data_range", "255"))
    rows = table(out)
    assert rc == 1 and rows["forward 3x339x510 (DIV2K LR)"][0] == "PASS"
    assert rows["data range"][0] == "FAIL" and "raised RuntimeError: shape '[2, 2]' is invalid" in rows["data range"][1]
    for rule in ("runtime", "PSNR valid"):  # the evaluation loop names the image and its size
        status, reason = rows[rule]
        assert status == "FAIL" and "the model failed on img_004 (LR 70x70): RuntimeError: shape '[2, 2]' is invalid" in reason


# --- layout rules and model-file resolution (no model runs) -----------------------------------


@pytest.mark.parametrize(
    ("relative", "ok", "message"),
    [
        ("models/team07_FastSR.py", True, "team 07, model FastSR"),
        ("models/rfdn.py", False, "is not named teamNN_Name.py: rename it"),
        ("models/team123_X.py", False, "(the team id has exactly two digits)"),
        ("models/team07_Fast-SR.py", False, "is not named teamNN_Name.py"),
        ("src/team07_FastSR.py", False, "is not in a models/ folder"),
    ],
)
def test_model_file_name_rule(tmp_path, relative, ok, message) -> None:
    result = layout.check_model_file_name(tmp_path / relative)
    assert result.passed is ok and message in result.reason


@pytest.mark.parametrize(
    ("weights", "ok", "message"),
    [
        ("model_zoo/team07_fastsr.pth", True, "matches team07_FastSR.py"),
        ("model_zoo/team07_FastSR.ckpt", True, "matches"),
        ("model_zoo/team07_fastsr.bin", False, "the extension must be one of .pth, .pt, .ckpt"),
        ("model_zoo/team07_other.pth", False, "rename it to model_zoo/team07_fastsr.pth"),
        ("weights/team07_fastsr.pth", False, "is not in a model_zoo/ folder"),
        (None, False, "no weights file given or found"),
    ],
)
def test_weights_name_rule(tmp_path, weights, ok, message) -> None:
    result = layout.check_weights_name(None if weights is None else tmp_path / weights,
                                       tmp_path / "models" / "team07_FastSR.py")
    assert result.passed is ok and message in result.reason


@pytest.mark.parametrize(
    ("imports", "ok", "message"),
    [
        ("import math\nimport numpy as np\nimport torch.nn.functional as F\nfrom esrkit.registry import register_entry",
         True, "imports only esrkit, math, numpy, torch"),
        ("from esrkit import registry", True, "imports only esrkit"),
        ("from models.esa import RLFNESA", False, "models.esa (a module of this repo) at line 1"),
        ("from .blocks import Block", False, "relative import '.blocks'"),
        ("import esrkit.imresize", False, "esrkit.imresize (a module of this repo)"),
        ("import utils.helpers", False, "utils.helpers (a module of this repo)"),
        ("def f():\n    import einops", False, "einops (third-party, not in the challenge environment) at line 2"),
        ("import torch\nx = (", False, "syntax error"),
    ],
)
def test_imports_rule(tmp_path, imports, ok, message) -> None:
    (tmp_path / "utils").mkdir()
    path = team_folder(tmp_path, "team07_FastSR.py", imports + "\n")
    result = layout.check_imports(path)
    assert result.passed is ok and message in result.reason, result.reason


def test_kit_entries_are_not_in_submission_form() -> None:
    """The kit's own RFDN lives in models/rfdn.py and imports models.esa: not a one-file submission."""
    submission = Submission.from_spec(TeamSpec(entry="RFDN"))
    assert submission.source.name == "rfdn.py" and submission.entry.data_range == 255.0
    assert not layout.check_model_file_name(submission.source).passed
    assert "models.esa (a module of this repo)" in layout.check_imports(submission.source).reason


def test_registering_file_leaves_the_registry_alone(good_team) -> None:
    """team00_RLFN.py registers 'RLFN' with id 0, both taken in the kit: collected aside, not registered."""
    before = [(e.name, e.model_id) for e in list_entries()]
    entry = resolve(TeamSpec(model_file=good_team))
    again = resolve(TeamSpec(model_file=good_team))  # importing twice is fine too
    assert entry.name == again.name == "RLFN" and entry.data_range == 255.0 and entry.source == good_team
    assert entry.weights == good_team.parent.parent / "model_zoo" / "team00_rlfn.pth"
    assert [(e.name, e.model_id) for e in list_entries()] == before


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('no GPU here')\n", "importing team05_X.py failed: RuntimeError: no GPU here"),
        (TINY.format(name="A", factor=4, expr="x") + TINY.format(name="B", factor=4, expr="x").split("\n", 2)[2],
         "defines 2 networks that build without arguments (A, B) and no weights to tell them apart: choose with "
         "--class_name NAME"),
        ("from torch import nn\n\nclass Net(nn.Module):\n    def __init__(self, c):\n        super().__init__()\n",
         "defines no network that builds without arguments (classes: Net(c)): say which and how with --class_name"),
    ],
)
def test_model_file_that_gives_no_model(tmp_path, set5, weights, source, message) -> None:
    path = team_folder(tmp_path, "team05_X.py", source)
    submission = Submission.from_spec(TeamSpec(model_file=path))
    assert submission.entry is None and message in submission.problem, submission.problem
    assert submission.problem.startswith("team05_X.py") and "\n" not in submission.problem
    report = check_module.run_check(submission, check_module.CheckOptions(
        baseline="RLFN", baseline_weights=weights["RLFN"], data_dir=set5, device="cpu"))
    assert report.result("model").status is Status.FAIL and not report.passed
    assert report.result("PSNR valid").status is Status.SKIP


def test_of_several_networks_the_one_the_weights_fit_is_chosen(tmp_path) -> None:
    """Two classes build without arguments; only X loads model_zoo/team05_x.pth strictly, so X it is (and says so)."""
    source = (TINY.format(name="Helper", factor=4, expr="x")
              + TINY.format(name="X", factor=4, expr="x").split("\n", 2)[2].replace("self.conv", "self.body"))
    path = team_folder(tmp_path, "team05_X.py", source, "team05_x.pth", state={"body.weight": TINY_STATE["conv.weight"]})
    entry = resolve(TeamSpec(model_file=path, data_range=1.0))
    assert entry.arch_name == "X" and entry.name == "X" and entry.call_text() == "X()"
    assert entry.notes[0].startswith("class X inferred: of Helper, X (buildable without arguments) the only one "
                                     "that loads team05_x.pth strictly")
    assert Submission.from_spec(TeamSpec(model_file=path, data_range=1.0)).describe() == "X() from team05_X.py"


def _split(layout_name: str, name: str, n: int) -> Split:
    pairs = tuple(ImagePair(f"{i:04d}", Path(f"{i:04d}.png"), None) for i in range(n))
    return Split(name, layout_name, Path("."), pairs)


@pytest.mark.parametrize(
    ("year", "layout_name", "split", "n", "bar"),
    [
        (2023, "ntire2023", "valid", 100, 29.00),
        (2023, "ntire2023", "valid", 2, None),  # not the full set: compare with the baseline instead
        (2023, "ntire2024", "valid", 200, None),  # another year's sets
        (2023, "benchmark", "valid", 100, None),
        (2024, "ntire2024", "valid", 200, 26.90),
        (2025, "ntire2024", "test", 200, 26.99),
        (2025, "ntire2023", "valid", 100, None),
    ],
)
def test_year_bar(year, layout_name, split, n, bar) -> None:
    assert check_module.year_bar(YEARS[year], _split(layout_name, split, n)) == bar


def test_usage_errors_are_one_line(good_team, set5, weights, tmp_path, capsys) -> None:
    rc, _, err = run_cli(capsys, *check_args(good_team, set5, "RFDN", weights["RFDN"], "--data_range", "1.0"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: team00_RLFN.py: entry RLFN declares data_range 255 but --data_range 1 was given")
    rc, _, err = run_cli(capsys, *check_args(good_team, set5, "RFDN", tmp_path / "missing.pth"))
    assert rc == 2 and "weights for RFDN not found" in err and len(err.strip().splitlines()) == 1


# --- package -----------------------------------------------------------------------------------


def test_readme_text_is_exactly_the_upload_format() -> None:
    text = package.readme_text(0.0123456789, True, False, "RLFN\nbaseline  re-run")
    assert text == ("runtime per image [s] : 0.012346\n"
                    "CPU[1] / GPU[0] : 1\n"
                    "Extra Data [1] / No Extra Data [0] : 0\n"
                    "Other description : RLFN baseline re-run\n")


def test_package_writes_a_flat_zip_readme_and_factsheet(good_team, set5, tmp_path, capsys) -> None:
    out = tmp_path / "upload" / "team00.zip"
    rc, stdout, err = run_cli(capsys, "package", "--model_file", str(good_team), "--data_dir", str(set5),
                              "--out", str(out), "--device", "cpu", "--extra_data", "--description", "RLFN re-run")
    assert rc == 0 and said(err) == [], err
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["img_004.png", "img_005.png", "readme.txt"]
        readme = zf.read("readme.txt").decode()
        extracted = tmp_path / "extracted"
        zf.extractall(extracted)
    assert README_RE.fullmatch(readme), readme
    lines = readme.splitlines()
    assert lines[1] == "CPU[1] / GPU[0] : 1" and lines[2] == "Extra Data [1] / No Extra Data [0] : 1"
    assert lines[3].startswith("Other description : RLFN re-run (runtime measured by esrkit")
    assert "CPU" in lines[3] and "mean of 2 valid images" in lines[3]
    for name in IMAGES:
        assert read_rgb(extracted / f"{name}.png").shape == read_rgb(set5 / "HR" / f"{name}.png").shape
    assert sorted(p.name for p in out.parent.iterdir()) == ["team00.zip", "team00_factsheet.md"]  # no leftovers
    sheet = (out.parent / "team00_factsheet.md").read_text()
    for expected in ("| Params [M] | 0.317 (317,218) |", "| FLOPs [G], official hook counter (2022-2023) | 19.70 |",
                     "| FLOPs [G], fvcore (2024-2025) | 19.67 |", "| Activations [M] | 80.05 |", "| #Conv | 39 |",
                     "| PSNR valid [dB] | 29.59 |", "x4, data range 255", "Extra data: yes"):
        assert expected in sheet, expected
    runtime_s = float(lines[0].rsplit(":", 1)[1])  # 1 µs resolution; the sheet rounds the exact mean to 10 µs
    sheet_ms = float(re.search(r"\| Runtime \[ms / image\] \| ([0-9.]+) \|", sheet).group(1))
    assert abs(sheet_ms - runtime_s * 1e3) <= 0.0051 + 1e-9, (sheet_ms, runtime_s)


def test_package_lr_only_test_split(good_team, benchmarks_dir, tmp_path, capsys) -> None:
    """The 2024/2025 test phase: DIV2K_LSDIR_test_LR alone; the zip holds SR images named without the x4."""
    lr_dir = tmp_path / "data" / "DIV2K_LSDIR_test_LR"
    lr_dir.mkdir(parents=True)
    for name in IMAGES:
        shutil.copy(benchmarks_dir / "Set5" / "LR_bicubic" / "X4" / f"{name}x4.png", lr_dir / f"{name}x4.png")
    out = tmp_path / "team00_test.zip"
    argv = ("package", "--model_file", str(good_team), "--data_dir", str(tmp_path / "data"), "--split", "test",
            "--out", str(out), "--device", "cpu")
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2 and "with --lr_only" in err and not out.exists()
    rc, _, err = run_cli(capsys, *argv, "--lr_only")
    assert rc == 0 and said(err) == [], err
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["img_004.png", "img_005.png", "readme.txt"]
        assert "mean of 2 test images" in zf.read("readme.txt").decode()
        zf.extractall(tmp_path / "extracted")
    for name in IMAGES:
        lr = read_rgb(lr_dir / f"{name}x4.png")
        assert read_rgb(tmp_path / "extracted" / f"{name}.png").shape == (4 * lr.shape[0], 4 * lr.shape[1], 3)
    assert "| PSNR test [dB] | n/a (LR only: no HR) |" in (tmp_path / "team00_test_factsheet.md").read_text()


def test_package_keeps_the_old_zip_when_the_model_is_broken(tmp_path, set5, capsys) -> None:
    path = team_folder(tmp_path, "team04_Broken.py",
                       TINY.format(name="Broken", factor=4, expr="self.up(self.conv(x)) * float('nan')"),
                       "team04_broken.pth", state=TINY_STATE)
    out = tmp_path / "team04.zip"
    out.write_bytes(b"previous upload")
    rc, _, err = run_cli(capsys, "package", "--model_file", str(path), "--data_dir", str(set5), "--out", str(out),
                         "--data_range", "255", "--device", "cpu")
    errors = [line for line in err.strip().splitlines() if not line.startswith("note: ")]  # notes say what was inferred
    assert rc == 2 and len(errors) == 1 and errors[0].startswith("error: ")
    assert "gave 235200 non-finite value(s) (NaN/Inf) on img_004" in err and "nothing was written" in err
    assert out.read_bytes() == b"previous upload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_zoo", "models", "team04.zip"]  # no factsheet, no staging


def test_package_stops_at_the_first_image_of_a_model_of_the_wrong_scale(tmp_path, set5, capsys) -> None:
    path = team_folder(tmp_path, "team03_Half.py", TINY.format(name="Half", factor=2, expr="self.up(self.conv(x))"),
                       "team03_half.pth", state=TINY_STATE)
    out = tmp_path / "team03.zip"
    rc, _, err = run_cli(capsys, "package", "--model_file", str(path), "--data_dir", str(set5), "--out", str(out),
                         "--data_range", "255", "--device", "cpu")
    assert rc == 2 and "img_004: the model returned 140x140 for a 70x70 input; x4 needs 280x280" in err
    assert "nothing was written" in err and not out.exists()


def test_zip_is_replaced_only_once_complete(tmp_path, monkeypatch) -> None:
    out = tmp_path / "team.zip"
    out.write_bytes(b"previous upload")
    image = tmp_path / "0801.png"
    image.write_bytes(b"png")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail)
    with pytest.raises(KitError, match="disk full.*the existing file was left as it was"):
        package.write_flat_zip(out, [image], {"readme.txt": "x"})
    assert out.read_bytes() == b"previous upload"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0801.png", "team.zip"]


def test_zip_and_factsheet_are_replaced_together(tmp_path, monkeypatch) -> None:
    """The factsheet cannot be put in place: the zip stays as it was too, and no temporary file is left."""
    out, sheet = tmp_path / "team.zip", tmp_path / "team_factsheet.md"
    out.write_bytes(b"previous upload")
    sheet.write_text("previous factsheet")
    image = tmp_path / "0801.png"
    image.write_bytes(b"png")
    real_replace = os.replace

    def replace(src, dst):  # noqa: ANN001
        if Path(dst) == sheet:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KitError, match="No space left on device"):
        package.write_flat_zip(out, [image], {"readme.txt": "x"}, beside={sheet: "new factsheet"})
    assert out.read_bytes() == b"previous upload" and sheet.read_text() == "previous factsheet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0801.png", "team.zip", "team_factsheet.md"]
    monkeypatch.setattr(os, "replace", real_replace)
    assert package.write_flat_zip(out, [image], {"readme.txt": "x"}, beside={sheet: "new factsheet"}) == \
        ["0801.png", "readme.txt"]
    assert sheet.read_text() == "new factsheet" and zipfile.ZipFile(out).namelist() == ["0801.png", "readme.txt"]


def test_an_infinite_output_is_not_finite_on_the_images(tmp_path, set5, weights, capsys) -> None:
    """Inf everywhere: clamping first made it white, so check said "finite on all 5 images" and scored its PSNR."""
    path = team_folder(tmp_path, "team05_Infinite.py",
                       TINY.format(name="Infinite", factor=4, expr="self.up(self.conv(x)) + float('inf')"),
                       "team05_infinite.pth", state=TINY_STATE)
    rc, out, _ = run_cli(capsys, *check_args(path, set5, "RLFN", weights["RLFN"], "--data_range", "255"))
    rows = table(out)
    assert rc == 1
    assert rows["forward 3x256x256"][0] == "FAIL" and "not finite on the images either" in rows["forward 3x256x256"][1]
    assert "finite on all" not in out
    for rule in ("runtime", "PSNR valid"):
        status, reason = rows[rule]
        assert status == "FAIL" and "non-finite value(s) (NaN/Inf)" in reason


def test_a_weights_file_that_does_not_exist_is_a_usage_error(tmp_path, set5, weights, capsys) -> None:
    path = team_folder(tmp_path, "team06_Tiny.py", TINY.format(name="Tiny", factor=4, expr="self.up(self.conv(x))"))
    rc, out, err = run_cli(capsys, *check_args(path, set5, "RLFN", weights["RLFN"], "--data_range", "255",
                                               "--weights", str(tmp_path / "model_zoo" / "team06_tiny_typo.pth")))
    assert rc == 2 and out == "" and said(err) == [f"error: weights file not found: "
                                                  f"{tmp_path / 'model_zoo' / 'team06_tiny_typo.pth'}; check --weights"]
