"""``python -m esrkit.submission export``: the kit's entries as single challenge files that reproduce them exactly.

Each exported file is imported here on its own (plain importlib, as the organisers' kit would), built with
no arguments and loaded strictly with plain ``torch.load``; its output must equal the kit entry's bit for
bit on a real benchmark image.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from esrkit import metrics
from esrkit.errors import KitError
from esrkit.imageio import read_rgb, uint8_to_tensor
from esrkit.entry import Entry
from esrkit.registry import get_entry
from esrkit.submission.__main__ import main
from esrkit.submission.export import default_name, export_entry
from esrkit.submission.layout import check_imports, check_model_file_name, check_weights_name
from tests.conftest import toy_team

OFFICIAL_FILES = {"RFDN": "rfdn_ntire2023_team00.pth", "RLFN": "rlfn_ntire2024_team00.pth",
                  "EFDN": "efdn_ntire2025_team00.pth", "IMDN": "imdn_ntire2022_baseline.pth"}


def import_alone(path: Path):
    spec = importlib.util.spec_from_file_location(f"organisers_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lr_crop(benchmarks_dir: Path, data_range: float) -> torch.Tensor:
    lr = read_rgb(benchmarks_dir / "Set5" / "LR_bicubic" / "X4" / "img_002x4.png")[:40, :48]
    return uint8_to_tensor(lr, data_range)


@pytest.mark.parametrize("name", ["MLRN-entire", *OFFICIAL_FILES])
def test_export_reproduces_the_entry(name: str, tmp_path: Path, benchmarks_dir: Path, official_weights_dir: Path) -> None:
    entry = get_entry(name)
    weights = official_weights_dir / OFFICIAL_FILES[name] if name in OFFICIAL_FILES else None
    model = entry.load(weights).model
    result = export_entry(entry, weights, 7, default_name(entry), tmp_path)
    assert check_model_file_name(result.model_file).passed and check_imports(result.model_file).passed
    assert check_weights_name(result.weights_file, result.model_file).passed
    imported = {n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(ast.parse(result.model_file.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    assert {m.split(".")[0] for m in imported} == {"__future__", "torch"}  # self-contained
    exported = getattr(import_alone(result.model_file), result.class_name)()
    exported.load_state_dict(torch.load(result.weights_file, weights_only=True), strict=True)
    x = lr_crop(benchmarks_dir, entry.data_range)
    with torch.inference_mode():
        assert torch.equal(exported.eval()(x), model.eval()(x))
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in model.parameters())


def save_state(model: nn.Module, folder: Path) -> Path:
    """Untrained weights of ``model`` as a plain state_dict in ``folder`` (outside the export folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{type(model).__name__.lower()}.pth"
    torch.save(model.state_dict(), path)
    return path


def test_builder_arguments_become_a_class_that_builds_without_any(tmp_path: Path) -> None:
    entry = get_entry("MLRN-x2")
    torch.manual_seed(0)
    weights = save_state(entry.build(), tmp_path / "weights")
    out = tmp_path / "out"
    assert default_name(entry) == "MLRN_x2"
    result = export_entry(entry, weights, 7, "MLRN_x2", out)
    module = import_alone(result.model_file)
    built = module.MLRN_x2()
    assert sum(p.numel() for p in built.parameters()) == 487_838  # the paper's Table 1: 488K at x2
    assert built.upscale == 2 and module.MLRN().upscale == 4  # the base class keeps its own defaults
    with pytest.raises(KitError, match="choose a --name other than MLRN"):
        export_entry(entry, weights, 8, "MLRN", out)


class Scaled(nn.Module):
    """A network whose behaviour depends on more than its source and constructor: the export cannot carry that."""

    gain = 1.0  # as written in the source; a test changes it on the class at run time

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 48, 3, padding=1)
        self.up = nn.PixelShuffle(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x)) * self.gain


def _scaled() -> Scaled:
    model = Scaled()
    model.gain = 2.0
    return model


def test_an_export_that_would_differ_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = save_state(Scaled(), tmp_path / "weights")
    out = tmp_path / "out"
    out.mkdir()
    entry = Entry("Scaled", Scaled, scale=4, data_range=1.0, model_id=90)
    monkeypatch.setattr(Scaled, "gain", 2.0)  # the source still says 1.0
    with pytest.raises(KitError, match="does not reproduce Scaled exactly .* nothing was written"):
        export_entry(entry, weights, 9, "Scaled", out)
    assert [p.name for p in out.iterdir()] == []


def test_an_entry_built_by_a_function_is_refused(tmp_path: Path) -> None:
    """A builder function can do anything after construction; an entry must name its class and arguments."""
    entry = Entry("Scaled", _scaled, scale=4, data_range=1.0, model_id=90)
    with pytest.raises(KitError, match="registered with the builder function _scaled; register its nn.Module class"):
        export_entry(entry, None, 9, "Scaled", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_cli_refuses_to_overwrite_and_bad_names(tmp_path: Path, capsys) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "team07_MLRN.py").write_text("# the team's own file\n")
    assert main(["export", "--model_id", "MLRN-entire", "--team", "7", "--out", str(tmp_path)]) == 2
    assert "team07_MLRN.py already exists and was left as it was" in capsys.readouterr().err
    assert (models / "team07_MLRN.py").read_text() == "# the team's own file\n"
    assert not (tmp_path / "model_zoo").exists()
    assert main(["export", "--model_id", "MLRN-entire", "--team", "100", "--out", str(tmp_path)]) == 2
    assert "two digits" in capsys.readouterr().err
    assert main(["export", "--model_id", "MLRN-entire", "--team", "7", "--name", "9lives", "--out", str(tmp_path)]) == 2
    assert "does not give a valid teamNN_Name.py" in capsys.readouterr().err
    assert main(["export", "--model_id", "MLRN-entire", "--team", "8", "--out", str(tmp_path)]) == 0
    assert "next: python -m esrkit.submission check --model_file" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["team07_MLRN.py", "team08_MLRN.py", "team08_mlrn.pth"]


class NeedsTheKit(Scaled):
    """Uses a kit module at run time: that cannot travel in one file."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return metrics.rgb_to_y(super().forward(x))


def test_a_network_that_needs_a_third_party_module_is_refused(tmp_path: Path) -> None:
    weights = save_state(NeedsTheKit(), tmp_path / "weights")
    out = tmp_path / "out"
    out.mkdir()
    entry = Entry("NeedsTheKit", NeedsTheKit, scale=4, data_range=1.0, model_id=91)
    with pytest.raises(KitError, match="NeedsTheKit in .* uses metrics from esrkit, which the challenge environment"):
        export_entry(entry, weights, 9, "NeedsTheKit", out)
    assert [p.name for p in out.iterdir()] == []
    assert "__init__" not in vars(NeedsTheKit)  # recording the builder's arguments left the class as it was


def test_the_next_command_after_exporting_a_teams_file_names_no_unknown_baseline(tmp_path: Path, capsys) -> None:
    """Exporting team 07's NanoSR printed `check ... --baseline NanoSR`: no such registered entry, so the command it
    suggested failed. A team's file is judged against the year's baseline instead."""
    source = toy_team(tmp_path / "theirs", "team07_Toy.py")
    assert main(["export", "--model_file", str(source), "--data_range", "1.0", "--team", "7",
                 "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    next_line = next(line for line in out.splitlines() if line.startswith("next: "))
    assert "--baseline" not in next_line and "--data_range 1" in next_line
    assert "judged against the year's baseline" in out
