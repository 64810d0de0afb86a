"""python -m benchmarks end to end on the CPU (tiny settings): complexity, timing, Table 3, outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.__main__ import main
from benchmarks.table3 import REFERENCE_COLUMNS


def test_complexity_only_names_every_counter(capsys) -> None:
    assert main(["--model_id", "MLRN-entire", "RFDN", "--complexity_only"]) == 0
    out = capsys.readouterr().out
    assert "| MLRN-entire |" in out and "| 274,710 | 16.85 | 16.88 | 17.07 | 97.87 | 43 |" in out
    assert "| 433,448 | 27.10 | 27.05 | 27.22 | 112.03 | 64 |" in out  # RFDN, untrained: still counted
    assert "official hook counter" in out and "fvcore" in out and "ptflops" in out


def test_full_report_on_cpu(tmp_path: Path, capsys) -> None:
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
