"""python -m benchmarks end to end on the CPU (tiny settings): complexity, timing, Table 3, outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.__main__ import main
from benchmarks.table3 import REFERENCE_COLUMNS, default_path
from tests.conftest import require


def test_complexity_only_names_every_counter(capsys) -> None:
    assert main(["--model_id", "MLRN-entire", "RFDN", "--complexity_only"]) == 0
    out = capsys.readouterr().out
    assert "| MLRN-entire |" in out and "| 274,710 | 16.85 | 16.88 | 17.07 | 97.87 | 43 |" in out
    assert "| 433,448 | 27.10 | 27.05 | 27.22 | 112.03 | 64 |" in out  # RFDN, untrained: still counted
    assert "official hook counter" in out and "fvcore" in out and "ptflops" in out


def test_complexity_only_writes_exact_integers_as_csv_and_json(tmp_path: Path, capsys) -> None:
    csv, js = tmp_path / "c.csv", tmp_path / "c.json"
    assert main(["--model_id", "MLRN-entire", "RFDN", "--complexity_only", "--csv", str(csv), "--json", str(js)]) == 0
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


def test_full_report_on_cpu(tmp_path: Path, capsys) -> None:
    require(default_path())  # the published Table 3 the measured rows are ranked against
    rc = main(["--model_id", "MLRN-entire", "--sizes", "256x256", "--repeats", "1", "--min_run_time", "0.05",
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
