"""``benchmarks/vs_official.py``: a smoke test of the side-by-side benchmark against the official NTIRE 2023 ESR
kit's own code (``--quick``: one model, two images, one round, each side a fresh subprocess). It checks that the
run completes, that both sides measured the same thing (counts, every image's PSNR), and that both ratios are
printed and recorded -- never how fast anything was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.official_cpu import default_official_kit
from benchmarks.vs_official import main
from tests.conftest import require


def test_quick_run_prints_and_records_both_ratios(tmp_path: Path, official_weights_dir: Path, benchmarks_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    official_kit = require(default_official_kit())
    assert main(["--quick", "--record", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "RATIO complexity:" in printed and "RATIO testdemo:" in printed
    assert printed.count("both sides agree: yes") == 2
    assert f"official side: the official NTIRE 2023 ESR kit's own code in {official_kit}" in printed
    assert "python -m benchmarks.official_cpu test_demo" in printed and "load average" in printed
    (record,) = tmp_path.glob("vs_official_cpu_*_quick.json")
    figures = json.loads(record.read_text())
    assert set(figures["parts"]) == {"complexity", "testdemo"} and figures["rounds"] == 1 and figures["quick"]
    assert figures["official_kit"] == str(official_kit)
    for part in figures["parts"].values():
        assert part["wall_ratio"] > 0 and part["disagreements"] == []
        assert len(part["kit"]["samples"]) == len(part["official"]["samples"]) == 1
    text = record.with_suffix(".md").read_text()
    assert "| counting, RLFN (" in text and "| `test_demo.py` defaults, RFDN on B100 (2 images)" in text
    assert text.count("the same in every round") == 2 and "--quick: a smoke test" in text


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rounds", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --rounds 0: give at least 1"
    assert main(["--official_kit", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --official_kit {tmp_path}: no test_demo.py, utils/model_summary.py there") \
        and "\n" not in err
    require(default_official_kit())
    assert main(["--data_dir", str(tmp_path), "--parts", "testdemo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --data_dir {tmp_path}: not a benchmark-layout folder") and "\n" not in err
