"""python -m benchmarks end to end on the CPU (tiny settings): complexity, timing, Table 3, outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.__main__ import main
from benchmarks.table3 import REFERENCE_COLUMNS, default_path
from esrkit.paths import REPO_ROOT
from tests.conftest import require


def test_complexity_only_names_every_counter(capsys) -> None:
    assert main(["--model_id", "MLRN-entire", "RFDN", "--complexity_only", "--untrained"]) == 0
    out = capsys.readouterr().out
    assert "| MLRN-entire | trained |" in out and "| 274,710 | 16.85 | 16.88 | 17.07 | 97.87 | 43 |" in out
    # RFDN without weights, counted untrained because --untrained asks for it, and said so
    assert "| RFDN | untrained (counted only) | 433,448 | 27.10 | 27.05 | 27.22 | 112.03 | 64 |" in out
    assert "official hook counter" in out and "fvcore" in out and "ptflops" in out


def test_complexity_only_writes_exact_integers_as_csv_and_json(tmp_path: Path, capsys) -> None:
    csv, js = tmp_path / "c.csv", tmp_path / "c.json"
    assert main(["--model_id", "MLRN-entire", "RFDN", "--complexity_only", "--untrained", "--csv", str(csv), "--json",
                 str(js)]) == 0
    df = pd.read_csv(csv)
    assert df.equals(pd.read_json(js))
    mlrn, rfdn = df.set_index("entry").loc["MLRN-entire"], df.set_index("entry").loc["RFDN"]
    # The paper's Table 3 row (0.275 M, 16.85 G, 97.87 M, 43) and RFDN's published 0.433 M / 27.10 G / 112.03 M / 64.
    assert (mlrn.params, mlrn.activations, mlrn.num_conv) == (274_710, 97_870_976, 43)
    assert round(mlrn.flops_official / 1e9, 2) == 16.85 and round(rfdn.flops_official / 1e9, 2) == 27.10
    assert (rfdn.params, rfdn.activations, rfdn.num_conv) == (433_448, 112_034_240, 64)
    assert "aten::gelu=16" in mlrn.fvcore_skipped_ops
    assert main(["--complexity_only", "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot: Table 3 outputs" in capsys.readouterr().err and not (tmp_path / "p.png").exists()


def test_unwritable_output_is_one_line_before_anything_is_measured(tmp_path: Path, capsys, monkeypatch) -> None:
    """A report path that cannot be written stops the run at once, not after every entry was measured."""
    measured = []
    monkeypatch.setattr("benchmarks.__main__.count", lambda model: measured.append(model))
    (tmp_path / "a_file").write_text("x")
    for fmt in ("markdown", "csv"):
        assert main(["--complexity_only", f"--{fmt}", str(tmp_path / "a_file" / "report.md")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --{fmt} ") and "a_file/report.md" in err and len(err.splitlines()) == 1
    assert main(["--sizes", "256x256", "--plot", str(tmp_path / "a_file" / "t.png")]) == 2  # the full report too
    assert "--plot" in capsys.readouterr().err and measured == []


def test_full_report_on_cpu(tmp_path: Path, capsys, official_weights_dir: Path) -> None:
    require(default_path())  # the published Table 3 the measured rows are ranked against
    rc = main(["--model_id", "MLRN-entire", "--sizes", "256x256", "--repeats", "1", "--min_run_time", "0.05",
               "--baseline_weights", str(official_weights_dir / "rfdn_ntire2023_team00.pth"),
               "--csv", str(tmp_path / "t.csv"), "--markdown", str(tmp_path / "t.md"), "--plot", str(tmp_path / "t.png"),
               "--json", str(tmp_path / "t.json"), "--latex", str(tmp_path / "t.tex")])
    assert rc == 0
    md = (tmp_path / "t.md").read_text()
    assert "Runtime and memory on CPU" in md and "÷ RFDN (same run)" in md and "1.00×" in md
    df = pd.read_csv(tmp_path / "t.csv")
    assert list(df.columns[: len(REFERENCE_COLUMNS)]) == list(REFERENCE_COLUMNS)
    assert len(df) == 34 and {"MLRN-entire", "RFDN"} <= set(df["team"])
    assert (tmp_path / "t.png").stat().st_size > 10_000 and (tmp_path / "t.json").is_file()


def test_bad_arguments_are_one_line(capsys) -> None:
    assert main(["--model_id", "MLRN-entire", "RFDN", "--weights", "a.pth"]) == 2
    assert "give one per entry" in capsys.readouterr().err
    assert main(["--model_id", "nope"]) == 2


def test_missing_weights_are_an_error_never_an_untrained_count(tmp_path: Path, capsys) -> None:
    """A misspelt weights path with wrong constructor arguments counted another network (119,124 params for a team's
    144,672) and exited 0; the only sign was "untrained" in a table."""
    team = tmp_path / "models" / "team05_Toy.py"
    team.parent.mkdir()
    team.write_text("from torch import nn\n\n\nclass Toy(nn.Module):\n    def __init__(self, dim=8):\n"
                    "        super().__init__()\n        self.conv = nn.Conv2d(3, dim, 3)\n\n"
                    "    def forward(self, x):\n        return self.conv(x)\n")
    code = main(["--complexity_only", "--model_file", str(team), "--class_name", "Toy", "--init_kwargs", '{"dim": 12}',
                 "--data_range", "1.0", "--weights", str(tmp_path / "model_zoo" / "team05_toy_typo.pth")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "team05_toy_typo.pth" in err[0] and "not found" in err[0], err
    # --untrained is for the kit's own entries: a team is never counted without its weights
    assert main(["--complexity_only", "--untrained", "--model_file", str(team), "--data_range", "1.0"]) == 2
    assert "no weights found for team05_Toy.py: expected " in capsys.readouterr().err


def test_the_default_report_without_the_baselines_weights_says_where_they_are(capsys, official_weights_dir) -> None:
    """The first `python -m benchmarks` timed an untrained RFDN; now it stops and names the shared official file."""
    from esrkit.registry import get_entry

    if get_entry("RFDN").has_default_weights():
        import pytest

        pytest.skip("model_zoo holds RFDN's weights here")
    assert main(["--sizes", "256x256", "--repeats", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "weights for RFDN not found" in err and "--baseline_weights" in err
    assert str(official_weights_dir / "rfdn_ntire2023_team00.pth") in err


def test_counts_below_one_are_refused(capsys) -> None:
    assert main(["--repeats", "-1"]) == 2 and "--repeats -1" in capsys.readouterr().err
    assert main(["--min_run_time", "0"]) == 2 and "--min_run_time 0" in capsys.readouterr().err


def test_the_html_report_is_the_results_page(tmp_path: Path, two_image_benchmark: Path, official_weights_dir) -> None:
    page = tmp_path / "report.html"
    assert main(["--model_id", "MLRN-entire", "--data_dir", str(two_image_benchmark), "--repeats", "1",
                 "--baseline_weights", str(official_weights_dir / "rfdn_ntire2023_team00.pth"), "--html", str(page),
                 "--quiet"]) == 0
    text = page.read_text(encoding="utf-8")
    assert "<html" in text and "MLRN-entire" in text and "RFDN" in text and "http://" not in text.split("<svg")[0]


def test_every_input_is_checked_before_anything_is_measured(tmp_path: Path, two_image_benchmark: Path, capsys,
                                                             monkeypatch) -> None:
    """The README's full report without the baseline's weights stopped after 83 s of measuring the other entries
    (the baseline's weights were looked at last): now every weights file is found and loaded first."""
    counted = []
    monkeypatch.setattr("benchmarks.__main__.count", lambda model: counted.append(model))
    report = [tmp_path / "report.md", tmp_path / "report.html"]
    full = ["--model_id", "MLRN-entire", "--data_dir", str(two_image_benchmark), "--repeats", "1",
            "--markdown", str(report[0]), "--html", str(report[1])]
    missing = tmp_path / "rfdn_typo.pth"
    mlrn_weights = REPO_ROOT / "model_zoo" / "mlrn_entire_x4.pth"
    for extra, expected in [
        (["--baseline_weights", str(missing)], f"error: weights for RFDN not found: expected {missing}; check "
                                               f"--baseline_weights"),
        (["--baseline_weights", str(mlrn_weights)], "error: "),  # another network's weights: they do not load
        (["--baseline", "none", "--baseline_weights", str(missing)], "error: --baseline_weights "),
        (["--baseline", "MLRN-entire", "--baseline_weights", str(missing)], "error: --baseline_weights "),
    ]:
        assert main([*full, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith(expected) and len(err.splitlines()) == 1, (extra, err)
    for extra in (["--data_dir", str(two_image_benchmark)], ["--baseline_weights", str(missing)]):
        assert main(["--complexity_only", *extra]) == 2
        assert capsys.readouterr().err.startswith(f"error: {extra[0]} ")
    assert counted == [] and not any(path.exists() for path in report)  # nothing counted, timed or written
