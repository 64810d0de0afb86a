"""Report rendering: Markdown, CSV, LaTeX, JSON and PNG outputs, each written atomically."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import esrkit.atomic
from benchmarks import render
from benchmarks.table3 import NOTES_KEY, REFERENCE_COLUMNS, MeasuredRow, load_published, merge, rerank, score_2024
from esrkit.errors import KitError
from tests.conftest import SHARED, require

TABLE3 = SHARED / "reference" / "ntire2023_esr_table3.csv"
DEVICE = "NVIDIA H100 80GB"


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return rerank(load_published(require(TABLE3)))


@pytest.fixture(scope="module")
def report() -> pd.DataFrame:
    rows = [
        MeasuredRow(team="RFDN (measured)", time_val=14.0, time_test=11.0, psnr_val=29.04, psnr_test=27.01,
                    params_M=0.433, flops_G=27.10, acts_M=112.03, mem_M=788.13, num_conv=64, device=DEVICE,
                    time_ratio_to_baseline=1.0, baseline="RFDN (measured)"),
        MeasuredRow(team="MLRN_test", time_val=9.0, psnr_val=29.01, params_M=0.30, flops_G=17.0, acts_M=70.0,
                    mem_M=300.0, num_conv=30, device=DEVICE, time_ratio_to_baseline=0.72, baseline="RFDN (measured)"),
    ]
    return rerank(merge(load_published(require(TABLE3)), rows))


def _table_lines(md: str) -> list[str]:
    """Body rows of the first Markdown table (header and separator dropped)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    return lines[2:]


def test_markdown_has_every_row_ranks_and_marks(report: pd.DataFrame) -> None:
    md = render.to_markdown(report)
    body = _table_lines(md)
    assert len(body) == 32 + 2
    assert body[0].startswith("| **MLRN_test** ◆")  # fastest runtime first, measured rows in bold
    assert "18.30 (3)" in md and "(1)" in md
    assert "9.00† (1)" in md and f"measured on {DEVICE}" in md and "challenge's GPU" in md
    assert "0.72× RFDN (measured)" in md and "Time ÷ baseline" in md
    assert f"◆ measured ({DEVICE})" in md
    assert "MLRN_test: Ave time = Val time (no test split measured)" in md
    assert "Overall tie" in md and "not stated in the paper" in md


def test_markdown_of_published_only_has_no_measured_marks(published: pd.DataFrame) -> None:
    md = render.to_markdown(published)
    assert len(_table_lines(md)) == 32
    assert "†" not in md and "◆" not in md and "Source" not in md
    assert "| MegSR | 29.04 | 26.95 | 21.26 | 15.33 | 18.30 (1) | 0.243 (12) | 14.90 (11) |" in md


def test_same_gpu_as_published_needs_no_dagger(report: pd.DataFrame) -> None:
    md = render.to_markdown(report, published_device=DEVICE.lower())
    assert "†" not in md and "◆" in md


def test_render_refuses_unranked_table() -> None:
    unranked = merge(load_published(require(TABLE3)), [])
    with pytest.raises(KitError, match="rerank"):
        render.to_markdown(unranked)


def test_csv_round_trips_with_reference_columns(report: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "table3.csv"
    render.to_csv(report, path)
    back = pd.read_csv(path)
    assert list(back.columns[: len(REFERENCE_COLUMNS)]) == list(REFERENCE_COLUMNS)
    assert len(back) == 34 and back["team"].iloc[0] == "MLRN_test"
    want = report.set_index("team")
    got = back.set_index("team").loc[want.index]
    for col in REFERENCE_COLUMNS[1:]:
        pd.testing.assert_series_equal(got[col].astype(float), want[col].astype(float), check_names=False)
    assert got.loc["RFDN (measured)", "source"] == f"measured ({DEVICE})"


def test_latex_looks_compilable(report: pd.DataFrame) -> None:
    tex = render.to_latex(report)
    assert tex.count(r"\begin{table*}") == tex.count(r"\end{table*}") == 1
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    rows = [ln for ln in tex.splitlines() if ln.endswith(r"\\")]
    assert len(rows) == 1 + 34
    # the 12 columns of Table 3 and the same-run ratio the caption's footnote refers to
    assert all(ln.count("&") == 13 for ln in rows) and "Time / baseline" in tex
    assert "18.30$_{(3)}$" in tex and r"Touch\_Fish" in tex and r"\textit{MLRN\_test}" in tex
    assert r"9.00$^\dagger_{(1)}$" in tex and "$$" not in tex
    body = "\n".join(ln for ln in tex.splitlines() if not ln.startswith("%"))
    assert body.isascii()
    assert body.count("{") == body.count("}")
    assert body.count("$") % 2 == 0
    assert not re.search(r"(?<!\\)[_&%#](?![^$]*\$)", body.replace("&", "")), "unescaped special outside math"


def test_json_loads(report: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "table3.json"
    render.to_json(report, path)
    data = json.loads(path.read_text())
    assert len(data["rows"]) == 34 and data["columns"][: len(REFERENCE_COLUMNS)] == list(REFERENCE_COLUMNS)
    mine = next(r for r in data["rows"] if r["team"] == "MLRN_test")
    assert mine["psnr_test"] is None and mine["time_ave_rank"] == 1
    assert data["rows"][0]["team"] == "MLRN_test"
    assert data["notes"] == report.attrs[NOTES_KEY]


def test_plot_writes_png(report: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "table3.png"
    render.plot(report, path)
    head = path.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    assert [p.name for p in tmp_path.iterdir()] == ["table3.png"]


def test_failed_write_leaves_previous_file_intact(report: pd.DataFrame, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    csv, png = tmp_path / "table3.csv", tmp_path / "table3.png"
    csv.write_text("previous csv\n")
    png.write_bytes(b"previous png")

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(esrkit.atomic.os, "fsync", crash)  # data written to the temp file, then the crash
    with pytest.raises(KitError, match=r"cannot write .*table3.csv: disk full.*existing file was left as it was"):
        render.to_csv(report, csv)
    with pytest.raises(KitError, match="cannot write .*table3.png: disk full"):
        render.plot(report, png)
    assert csv.read_text() == "previous csv\n" and png.read_bytes() == b"previous png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table3.csv", "table3.png"]


def test_pareto_front() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 2.0]
    y = [28.0, 29.0, 28.5, 29.5, 28.0]
    assert render.pareto_front(x, y) == [0, 1, 3]


def test_score_view_renders(report: pd.DataFrame) -> None:
    md = render.score_to_markdown(score_2024(report, "RFDN (measured)"))
    assert "| 1 | **MLRN_test** ◆ |" in md and "| 2 | **RFDN (measured)** ◆ | 7.3891 |" in md
    assert "No runtime score for 32 row(s)" in md


def test_a_cpu_runtime_and_a_benchmark_set_psnr_are_never_passed_off_as_challenge_figures(published) -> None:
    """A CPU run on Set14: its runtime is not ranked among the published GPU times (they keep their ranks), and its
    Set14 PSNR is not shown as a DIV2K "Val PSNR" without a mark, nor plotted on the DIV2K axis."""
    cpu = MeasuredRow(team="MLRN-entire", time_val=337.6, psnr_val=28.27, params_M=0.275, flops_G=16.85, acts_M=97.87,
                      mem_M=None, num_conv=43, device="CPU x86_64 (2 threads)", timed_on_gpu=False,
                      psnr_set="Set14 (benchmark layout, 14 images)", time_ratio_to_baseline=0.7, baseline="RFDN")
    df = rerank(merge(load_published(require(TABLE3)), [cpu]))
    assert pd.isna(df.set_index("team").loc["MLRN-entire", "time_ave_rank"])
    same = df[df["source"] == "published"].set_index("team")["time_ave_rank"]
    assert (same == published.set_index("team").loc[same.index, "time_ave_rank"]).all()  # nothing shifted
    md = render.to_markdown(df)
    row = next(line for line in _table_lines(md) if "MLRN-entire" in line)
    assert "28.27‡" in row and "337.60† (not a GPU time: unranked)" in row
    assert "‡ PSNR measured on Set14 (benchmark layout, 14 images), not on DIV2K valid" in md
    assert any("Not ranked by runtime: MLRN-entire (timed on CPU x86_64 (2 threads), not a GPU)" in n
               for n in df.attrs[NOTES_KEY])
    tex = render.to_latex(df)
    assert r"28.27$^\ddagger$" in tex and r"$^\ddagger$PSNR measured on Set14" in tex
