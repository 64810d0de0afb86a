"""``benchmarks/vs_official.py``: a smoke test of the side-by-side benchmark (``--quick``: one model, two images, one
round, each side a fresh subprocess). It checks that the run completes, that both sides measured the same thing
(counts, PSNR) and that both ratios are printed and recorded -- never how fast anything was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.vs_official import main


def test_quick_run_prints_and_records_both_ratios(tmp_path: Path, official_weights_dir: Path, benchmarks_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vs_official.json"
    assert main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RATIO complexity:" in printed and "RATIO testdemo:" in printed
    assert printed.count("both sides agree: yes") == 2
    assert "official side: stand-ins written from OFFICIAL_KITS.md" in printed and "load average" in printed
    figures = json.loads(out.read_text())
    assert set(figures["parts"]) == {"complexity", "testdemo"} and figures["rounds"] == 1 and figures["quick"]
    for part in figures["parts"].values():
        assert part["wall_ratio"] > 0 and part["disagreements"] == []
        assert len(part["kit"]["samples"]) == len(part["official"]["samples"]) == 1


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rounds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --rounds 0: give at least 1"
    assert main(["--data_dir", str(tmp_path), "--parts", "testdemo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --data_dir {tmp_path}: not a benchmark-layout folder") and "\n" not in err
    assert main(["--official_kit", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --official_kit {tmp_path}: no utils/model_summary.py there")
