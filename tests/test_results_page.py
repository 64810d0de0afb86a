"""The results page: ranking under each year's rule (hand-computed from the formulas), escaping, entries of
another shape, failed teams, CPU runtimes. The page is read back with the standard library's HTML parser;
tests/test_results_page_browser.py opens it in a real browser."""

from __future__ import annotations

import html.parser
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import esrkit.atomic
from esrkit.errors import KitError
from esrkit.ranking import pareto_front, score_from_ratios, track_ranks
from esrkit.results_page import infer_year, render_results_page, write_results_page
from tests.conftest import SHARED, require

H200 = "NVIDIA H200"


def entry(runtime: float, psnr: float, params: float, flops_fvcore: float, *, flops_hook: float | None = None,
          acts: float = 50.0, memory: float = 300.0, conv: int = 40, device: str = H200, device_type: str = "cuda",
          convention: str = "NTIRE 2025", layout: str = "ntire2024", **extra: Any) -> dict[str, Any]:
    """A results.json entry as the kit writes one (the keys the page reads)."""
    record = {
        "valid_runtime": [runtime], "valid_ave_runtime": runtime, "valid_psnr": [psnr], "valid_ave_psnr": psnr,
        "valid_images": ["0801"], "valid_memory": memory if device_type == "cuda" else 0.0,
        "num_parameters": params, "flops": flops_fvcore, "flops_counter": "fvcore (2024-2025)",
        "flops_fvcore": flops_fvcore, "flops_hook": flops_fvcore if flops_hook is None else flops_hook,
        "activations": acts, "num_conv": conv, "device": device, "device_type": device_type,
        "memory_measured": device_type == "cuda", "results_convention": convention, "layout": layout,
        "complexity_probe": "counted on torch.rand(1, 3, 256, 256) from torch.Generator().manual_seed(0)",
        "weights_loading": "state_dict the file itself, strict=True, weights_only=True",
    }
    record.update(extra)
    return record


class _Page(html.parser.HTMLParser):
    """The standings table as {entry: {column: (numbers' attributes, text)}}, and the tags that load anything."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, dict[str, Any]]] = {}
        self.order: list[str] = []
        self.sources: list[str] = []
        self.scripts = 0
        self._in_table = False
        self._row: str | None = None
        self._col: str | None = None
        self._num: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.sources += [a[k] for k in ("src", "href") if k in a]
        self.scripts += tag == "script"
        if tag == "table" and a.get("id") == "standings":
            self._in_table = True
        elif self._in_table and tag == "tr" and "data-entry" in a:
            self._row = a["data-entry"]
            self.order.append(self._row)
            self.rows[self._row] = {}
        elif self._row is not None and tag == "td":
            self._col = a["data-col"]
            self.rows[self._row][self._col] = {"nums": [], "text": "", "title": a.get("title", "")}
        elif self._col is not None and tag == "span" and "num" in a.get("class", "").split():
            self._num = dict(a, text="")

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._num is not None:
            self.rows[self._row][self._col]["nums"].append(self._num)
            self._num = None
        elif tag == "td":
            self._col = None
        elif tag == "table":
            self._in_table, self._row = False, None

    def handle_data(self, data: str) -> None:
        if self._num is not None:
            self._num["text"] += data
        if self._col is not None:
            self.rows[self._row][self._col]["text"] += data


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def value(page: _Page, row: str, col: str, i: int = 0) -> float:
    return float(page.rows[row][col]["nums"][i]["data-value"])


# ---------------------------------------------------------------------------------------------
# the ranking helpers


def test_score_from_ratios_is_the_published_formula() -> None:
    # ratios chosen so that each exp(2·ratio) is a whole number: ln(3)/2 -> 3, ln(2)/2 -> 2, ln(5)/2 -> 5
    score = score_from_ratios([1.0, math.log(3) / 2], [1.0, math.log(2) / 2], [1.0, math.log(5) / 2])
    assert score.final[0] == pytest.approx(math.e ** 2, rel=1e-15)
    assert score.runtime[1] == pytest.approx(3.0) and score.flops[1] == pytest.approx(2.0)
    assert score.params[1] == pytest.approx(5.0)
    assert score.final[1] == pytest.approx(0.7 * 3 + 0.15 * 2 + 0.15 * 5)  # 3.15
    assert np.isnan(score_from_ratios([np.nan], [1.0], [1.0]).final[0])


def test_a_score_beyond_the_largest_float_is_inf_and_every_finite_score_is_unchanged() -> None:
    """exp(2·ratio) overflows a float past a ratio of about 354.9 (math.exp raises OverflowError there): the
    score is inf, silently, and ln(score) still orders such teams; a finite score is the formula's to the bit."""
    with pytest.raises(OverflowError):
        math.exp(2 * 400.0)
    ratios = [1.0, 354.0, 400.0, 500.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        score = score_from_ratios(ratios, [1.0] * 4, [1.0] * 4)
    assert score.runtime[1] == math.exp(2 * 354.0) and math.isfinite(score.final[1])
    assert score.final[1] == 0.7 * math.exp(708.0) + 0.15 * math.e ** 2 + 0.15 * math.e ** 2
    assert math.isinf(score.final[2]) and math.isinf(score.final[3]) and math.isinf(score.runtime[2])
    assert score.log_final[0] == pytest.approx(2.0, rel=1e-15)
    # ln(0.7·e^800 + 0.3·e^2) = ln(0.7) + 800 to double precision
    assert score.log_final[2] == pytest.approx(math.log(0.7) + 800.0, rel=1e-15)
    assert score.log_final[2] < score.log_final[3]
    assert np.isnan(score_from_ratios([np.nan], [1.0], [1.0]).log_final[0])


def test_track_ranks_reproduce_every_published_rank_of_table3() -> None:
    df = pd.read_csv(require(SHARED / "reference" / "ntire2023_esr_table3.csv"), skipinitialspace=True)
    t = track_ranks(df["time_ave"], df["params_M"], df["flops_G"], df["acts_M"], df["mem_M"])
    for got, column in ((t.time, "time_ave_rank"), (t.params, "params_M_rank"), (t.flops, "flops_G_rank"),
                        (t.acts, "acts_M_rank"), (t.mem, "mem_M_rank"), (t.model_comp, "model_comp"),
                        (t.model_comp_rank, "model_comp_rank"), (t.overall, "overall"), (t.overall_rank, "overall_rank")):
        assert (got == df[column].to_numpy()).all(), column


def test_track_ranks_without_memory_give_no_overall() -> None:
    t = track_ranks([1.0, 2.0, 3.0], [0.3, 0.2, 0.1], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [100.0, np.nan, 50.0])
    assert list(t.mem[[0, 2]]) == [2.0, 1.0] and np.isnan(t.mem[1])
    # time 1 2 3, params 3 2 1, FLOPs 3 2 1, acts 1 2 3, mem 2 - 1: Overall 10 and 9, none for the middle one
    assert list(t.overall[[0, 2]]) == [10.0, 9.0] and np.isnan(t.overall[1])
    assert list(t.overall_rank[[0, 2]]) == [2.0, 1.0] and np.isnan(t.overall_rank[1])


def test_pareto_front_skips_missing_points() -> None:
    assert pareto_front([1.0, 2.0, 3.0, 4.0, 2.0], [28.0, 29.0, 28.5, 29.5, 28.0]) == [0, 1, 3]
    assert pareto_front([1.0, np.nan, 3.0], [28.0, 30.0, np.nan]) == [0]


# ---------------------------------------------------------------------------------------------
# ranking on the page, per year


def round_2025() -> dict[str, Any]:
    base = 20.0  # baseline: runtime 20 ms, 16 G FLOPs (fvcore), 0.25 M params -> Score e^2
    return {
        "00_EFDN_baseline": entry(base, 27.00, 0.25, 16.0, flops_hook=16.1),
        # A: exp(2·ratio) = 3 (runtime), 2 (FLOPs), 5 (params) -> 0.7·3 + 0.15·2 + 0.15·5 = 3.15
        "01_A": entry(base * math.log(3) / 2, 27.10, 0.25 * math.log(5) / 2, 16.0 * math.log(2) / 2, flops_hook=99.0),
        # B: twice as fast as the baseline, same FLOPs and params -> 0.7·e + 0.3·e^2 = 4.1195...
        "02_B": entry(base / 2, 27.05, 0.25, 16.0),
        # C: faster than everyone but below the 2025 PSNR bar (26.90 dB valid)
        "03_C": entry(1.0, 26.80, 0.01, 1.0),
    }


def test_2025_ranks_by_the_score_relative_to_the_baseline() -> None:
    results = round_2025()
    page = parse(render_results_page(results))  # the year comes from results_convention
    assert value(page, "01_A", "score") == pytest.approx(3.15, rel=1e-12)
    assert value(page, "02_B", "score") == pytest.approx(0.7 * math.e + 0.3 * math.e ** 2, rel=1e-12)
    assert value(page, "00_EFDN_baseline", "score") == pytest.approx(math.e ** 2, rel=1e-12)
    assert page.rows["01_A"]["score"]["nums"][0]["text"] == "3.1500"
    assert [value(page, k, "rank") for k in ("01_A", "02_B")] == [1, 2]  # B is faster, A scores better
    assert page.order[:4] == ["01_A", "02_B", "00_EFDN_baseline", "03_C"]
    assert "baseline" in page.rows["00_EFDN_baseline"]["rank"]["text"] and not page.rows["00_EFDN_baseline"]["rank"]["nums"]
    assert "below PSNR bar" in page.rows["03_C"]["rank"]["text"]
    assert value(page, "02_B", "ratio") == 0.5 and page.rows["02_B"]["ratio"]["nums"][0]["text"] == "0.50"
    # FLOPs under the year's counter (fvcore), the hook counter beside it
    assert page.rows["01_A"]["flops"]["nums"][0]["data-key"] == "flops_fvcore"
    assert value(page, "01_A", "flops_other") == 99.0


def test_2024_score_is_relative_to_rlfn() -> None:
    results = {k.replace("EFDN", "RLFN"): dict(v, results_convention="NTIRE 2024-2025 (ntire2024 layout)")
               for k, v in round_2025().items()}
    assert infer_year(results) == (2024, "")  # the range is settled by the baseline present
    del results["00_RLFN_baseline"]
    assert infer_year(results) == (None, "results_convention allows NTIRE 2024 or 2025 and no baseline settles it")
    assert infer_year({"a": {"results_convention": "NTIRE 2023"}, "b": {"results_convention": "NTIRE 2025"}})[0] is None
    results["00_RLFN_baseline"] = dict(round_2025()["00_EFDN_baseline"], results_convention="NTIRE 2024")
    page = parse(render_results_page(results))
    assert value(page, "01_A", "score") == pytest.approx(3.15, rel=1e-12)
    assert value(page, "00_RLFN_baseline", "score") == pytest.approx(math.e ** 2, rel=1e-12)


def test_2023_ranks_the_main_track_by_runtime_with_model_comp_and_overall() -> None:
    # time ranks 1 2 3; params 3 1 2; FLOPs (hook counter) 2 3 1; acts 2 1 3; mem 3 2 1
    # Model Comp.: 5 4 3 -> ranks 3 2 1; Overall: 11 9 10 -> ranks 3 1 2
    conv = dict(convention="NTIRE 2023", layout="ntire2023")
    results = {
        "00_RFDN_baseline": entry(40.0, 29.05, 0.433, 27.05, flops_hook=27.10, **conv),
        "01_T1": entry(10.0, 29.10, 0.30, 1.0, flops_hook=20.0, acts=50.0, memory=300.0, **conv),
        "02_T2": entry(12.0, 29.10, 0.20, 1.0, flops_hook=25.0, acts=40.0, memory=200.0, **conv),
        "03_T3": entry(15.0, 29.10, 0.25, 1.0, flops_hook=15.0, acts=60.0, memory=100.0, **conv),
    }
    page = parse(render_results_page(results))
    got = {k: [value(page, k, "rank"), value(page, k, "model_comp"), value(page, k, "model_comp", 1),
               value(page, k, "overall"), value(page, k, "overall", 1)] for k in ("01_T1", "02_T2", "03_T3")}
    assert got == {"01_T1": [1, 5, 3, 11, 3], "02_T2": [2, 4, 2, 9, 1], "03_T3": [3, 3, 1, 10, 2]}
    assert page.rows["01_T1"]["overall"]["text"] == "11 (3)"
    assert page.rows["01_T1"]["flops"]["nums"][0]["data-key"] == "flops_hook"
    assert value(page, "02_T2", "ratio") == 12.0 / 40.0
    assert "score" not in page.rows["01_T1"]


def test_test_split_runtimes_are_averaged_as_the_official_ave_time() -> None:
    results = round_2025()
    for k, v in results.items():
        v["test_ave_runtime"] = v["valid_ave_runtime"] + 2.0
    results["02_B"]["test_ave_runtime"] = 30.0  # (10 + 30) / 2 = 20: as slow as the baseline's (20 + 22) / 2 = 21
    page = parse(render_results_page(results))
    assert value(page, "02_B", "runtime_ave") == 20.0
    assert page.rows["02_B"]["runtime_ave"]["nums"][0]["data-derived"] == "runtime_ave"
    assert value(page, "02_B", "ratio") == 20.0 / 21.0


def test_without_a_year_the_page_ranks_by_runtime_and_says_so() -> None:
    results = {k: dict(v, results_convention="esrkit (Table 3 of the MLRN paper)") for k, v in round_2025().items()}
    text = render_results_page(results)
    page = parse(text)
    assert "No challenge year" in text and "ranked by runtime alone" in text
    assert [value(page, k, "rank") for k in ("03_C", "02_B", "01_A")] == [1, 2, 3]  # no PSNR bar either
    assert "score" not in page.rows["01_A"]


def test_an_explicit_year_overrides_and_a_missing_baseline_is_said() -> None:
    results = round_2025()
    del results["00_EFDN_baseline"]
    text = render_results_page(results, year=2025)
    assert "00_EFDN_baseline is not in results.json" in text and "ranked by runtime instead of the score" in text
    assert [value(parse(text), k, "rank") for k in ("02_B", "01_A")] == [1, 2]
    with pytest.raises(KitError, match="baseline '00_X' is not an entry"):
        render_results_page(results, baseline_key="00_X")
    with pytest.raises(KitError, match="unknown --year 2019"):
        render_results_page(results, year=2019)


# ---------------------------------------------------------------------------------------------
# CPU runtimes, failed teams, odd entries, escaping


def test_cpu_runtimes_are_marked_and_not_ranked_beside_gpu_times() -> None:
    results = round_2025()
    results["04_OnCPU"] = entry(5.0, 27.20, 0.1, 5.0, device="CPU x86_64 (2 threads)", device_type="cpu",
                                timing="wall clock around the forward pass")
    text = render_results_page(results)
    page = parse(text)
    cpu = page.rows["04_OnCPU"]
    assert "CPU" in cpu["runtime_valid"]["text"] and "other device" in cpu["rank"]["text"]
    assert not cpu["rank"]["nums"] and not cpu["ratio"]["nums"] and not cpu["score"]["nums"]
    assert cpu["memory"]["text"] == "not measured" and not cpu["memory"]["nums"]  # never 0.00
    assert "not on NVIDIA H200 as the ranked runtimes" in text
    assert "CPU" not in page.rows["01_A"]["runtime_valid"]["text"]
    assert [value(page, k, "rank") for k in ("01_A", "02_B")] == [1, 2]


def test_an_all_cpu_round_is_ranked_but_said_to_be_indicative() -> None:
    results = {k: dict(v, device="CPU x86_64", device_type="cpu", memory_measured=False)
               for k, v in round_2025().items()}
    text = render_results_page(results)
    assert "measured on CPU x86_64 (wall clock), not on a GPU" in text and "indicative only" in text
    assert value(parse(text), "01_A", "rank") == 1


def test_failed_teams_appear_with_their_status_and_error() -> None:
    results = round_2025()
    status = {f"team {k[:2]} (x.py)": {"key": k, "status": "ok", "error": ""} for k in results}
    status["team 09 (team09_Broken.py)"] = {"key": None, "status": "failed",
                                            "error": "team 09 (team09_Broken.py): No module named 'timm': pip install timm"}
    status["team 11 (team11_Gone.py)"] = {"key": "11_Gone", "status": "ok", "error": ""}
    results["12_Old"] = entry(18.0, 27.0, 0.2, 10.0)  # kept from an earlier run: no line in this status
    text = render_results_page(results, status=status)
    page = parse(text)
    broken = page.rows["team 09 (team09_Broken.py)"]
    assert broken["status"]["text"] == "failed" and "pip install timm" in broken["flags"]["text"]
    assert not any(cell["nums"] for cell in broken.values())
    assert "status ok but no entry in results.json" in text
    assert page.rows["12_Old"]["status"]["text"] == "-" and "not in this batch" in page.rows["12_Old"]["flags"]["text"]
    assert page.order[-2:] == ["team 09 (team09_Broken.py)", "team 11 (team11_Gone.py)"]
    assert page.rows["01_A"]["status"]["text"] == "ok" and "team 01 (x.py)" in page.rows["01_A"]["team"]["text"]


def test_entries_of_another_shape_show_dashes() -> None:
    results = round_2025()
    results["05_list"] = [1, 2, 3]
    results["06_strings"] = {"valid_ave_runtime": "12.5", "valid_ave_psnr": None, "num_conv": 3.5,
                             "flops": float("nan"), "valid_psnr": [30.0, "x", None], "valid_images": "oops",
                             "activations": True, "notes": "not a list", "complexity_input_dependent": ["x"]}
    results["07_official"] = {"valid_ave_runtime": 15.0, "valid_ave_psnr": 27.5, "num_parameters": 0.2,
                              "flops": 10.0, "activations": 40.0, "valid_memory": 250.0, "num_conv": 30}
    text = render_results_page(results)
    page = parse(text)
    for key in ("05_list", "06_strings"):
        row = page.rows[key]
        assert not any(cell["nums"] for cell in row.values()), key
        assert row["runtime_valid"]["text"] == "-" and row["conv"]["text"] == "-"
    assert "unreadable" in page.rows["05_list"]["rank"]["text"]
    # an official kit's entry (no device, no counter named): `flops` is read as the year's counter
    official = page.rows["07_official"]
    assert official["flops"]["nums"][0]["data-key"] == "flops" and value(page, "07_official", "memory") == 250.0
    assert official["flops_other"]["text"] == "-"  # never the same number under the other counter
    assert "other device" in official["rank"]["text"]  # its runtime's device is not the baseline's
    empty = render_results_page({})
    assert "0 measured entries" in empty and "nothing to plot" in empty
    with pytest.raises(KitError, match="not hold a JSON object"):
        render_results_page([])  # type: ignore[arg-type]


def test_everything_from_results_json_is_escaped() -> None:
    results = round_2025()
    evil = '<script>alert("x")</script>&$\\frac{'
    results[evil] = entry(15.0, 27.3, 0.2, 10.0, notes=['<img src=x onerror="alert(1)">'],
                          weights_loading="non-strict: 1 missing: <b>k</b>")
    status = {'team "12" <i>': {"key": evil, "status": "ok", "error": ""}}
    text = render_results_page(results, status=status, title="<Round & 1>")
    assert text.count("<script") == 1 and "<img src=x" not in text and "<b>k</b>" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;$\\frac{" in text
    assert "<title>&lt;Round &amp; 1&gt;</title>" in text
    assert evil in parse(text).rows  # the parser unescapes: the name round-trips exactly


def test_the_page_loads_nothing_from_outside(tmp_path: Path) -> None:
    results = round_2025()
    text = render_results_page(results, status={"entry EFDN": {"key": "00_EFDN_baseline", "status": "ok"}})
    page = parse(text)
    assert page.sources and all(s.startswith(("data:", "#")) for s in page.sources), page.sources
    assert "default-src 'none'" in text
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text) and "@import" not in text and "url(" not in text


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.html"
    write_results_page(path, round_2025())
    first = path.read_text(encoding="utf-8")
    assert first.startswith("<!DOCTYPE html>") and 'data-entry="01_A"' in first

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(esrkit.atomic.os, "fsync", crash)
    with pytest.raises(KitError, match="cannot write .*results.html: disk full"):
        write_results_page(path, {"x": entry(1.0, 27.0, 0.1, 1.0)})
    assert path.read_text(encoding="utf-8") == first and [p.name for p in tmp_path.iterdir()] == ["results.html"]


# ---------------------------------------------------------------------------------------------
# a real round: slow teams, several environments, entries of another convention, 40 points to label


def test_a_score_that_overflows_is_said_in_words_and_ranked_last() -> None:
    """Runtimes of 100x and 400x the baseline's: scores of about e^200 and beyond a float. Shown as "> 1e6" and
    "overflow" (never 64 digits), their data-value the raw value ('inf'), ranked after every finite score."""
    results = round_2025()
    results["04_Slow"] = entry(20.0 * 100, 27.2, 0.25, 16.0)
    results["05_Slower"] = entry(20.0 * 400, 27.2, 0.25, 16.0)
    results["06_Slowest"] = entry(20.0 * 500, 27.2, 0.25, 16.0)
    page = parse(render_results_page(results))
    slow, slower = page.rows["04_Slow"]["score"]["nums"][0], page.rows["05_Slower"]["score"]["nums"][0]
    assert slow["text"] == "> 1e6" and float(slow["data-value"]) == pytest.approx(0.7 * math.exp(200.0) + 0.3 * math.e ** 2)
    assert slower["text"] == "overflow" and slower["data-value"] == "inf" and "largest float" in slower["title"]
    assert [value(page, k, "rank") for k in ("01_A", "02_B", "04_Slow", "05_Slower", "06_Slowest")] == [1, 2, 3, 4, 5]
    assert value(page, "01_A", "score") == pytest.approx(3.15, rel=1e-12)  # the finite scores: as before


def environment(torch: str = "2.13.0+cu124", **packages: str) -> dict[str, Any]:
    return {"python": "3.11.7", "torch": torch, "platform": "Linux-5.15.0-105-generic-x86_64-with-glibc2.35",
            "packages": packages}


def test_teams_measured_under_two_torch_versions_are_ranked_together_under_a_note() -> None:
    results = round_2025()
    for key in results:
        results[key]["environment"] = environment()
    results["02_B"]["environment"] = environment("2.5.1+cu124")
    results["01_A"]["environment"] = environment(einops="0.8.1")
    results["04_D"] = entry(15.0, 27.1, 0.2, 10.0, environment=environment(einops="0.7.0"))
    results["05_Old"] = entry(18.0, 27.1, 0.2, 10.0, torch_version="2.5.1+cu124")  # before `environment`
    text = render_results_page(results)
    page = parse(text)
    note = re.search(r'<p class="caution">(Measured under 2 environments[^<]*)</p>', text)
    assert note is not None, "no note above the table"
    assert "A: Python 3.11.7, torch 2.13.0+cu124, Linux-5.15.0-105-generic-x86_64-with-glibc2.35 — 4 entries" in note[1]
    assert "B: Python 3.11.7, torch 2.5.1+cu124, Linux-5.15.0-105-generic-x86_64-with-glibc2.35 — 2 entries (02_B, 05_Old)" in note[1]
    assert text.index("Measured under 2 environments") < text.index('<table id="standings">')
    assert "einops at 2 versions: 0.8.1 (01_A); 0.7.0 (04_D)." in text  # the first: the most used, or the first seen
    for key in ("02_B", "05_Old"):
        assert "other environment" in page.rows[key]["flags"]["text"], key
    assert "other environment" not in page.rows["01_A"]["flags"]["text"]
    assert value(page, "02_B", "rank") in (1, 2, 3, 4)  # ranked, with the note shown
    assert "torch 2.5.1+cu124" in text.split('id="team-')[1 + page.order.index("02_B")]  # in its drill-down
    one = render_results_page({k: dict(v, environment=environment()) for k, v in round_2025().items()})
    assert "environments" not in one and "other environment" not in one


def test_an_entry_of_another_convention_and_data_is_flagged_and_not_ranked() -> None:
    """A 2023-convention entry (hook FLOPs, Set5) kept by merge --allow_mixed in a 2025 round: the year is still
    2025 (the baseline's), the entry is flagged in words, not ranked, not plotted, no ratio to the baseline."""
    results = round_2025()
    for key in results:
        results[key].update(data_dir="/data/DIV2K_LSDIR", data_fingerprint="f" * 32)
    results["07_Old"] = entry(12.0, 32.1, 0.3, 20.0, convention="NTIRE 2023", layout="benchmark",
                              flops_counter="official hook counter (2022-2023)", data_dir="/data/Set5",
                              data_fingerprint="5" * 32)
    text = render_results_page(results)
    page = parse(text)
    assert "NTIRE 2025 rules" in text and "No challenge year" not in text
    old = page.rows["07_Old"]
    assert "other data" in old["rank"]["text"] and not old["rank"]["nums"] and not old["ratio"]["nums"]
    assert "measured otherwise than 00_EFDN_baseline: results_convention NTIRE 2023, not NTIRE 2025" in text
    assert "data /data/Set5 (valid 1 images), not /data/DIV2K_LSDIR (valid 1 images)" in text
    assert [value(page, k, "rank") for k in ("01_A", "02_B")] == [1, 2]
    assert 'data-entry="07_Old"' not in text.split('<h2>Efficiency frontiers</h2>')[1].split("<h2>Per team")[0]
    # another data set alone (the same convention) is refused just the same
    results["07_Old"] = dict(results["01_A"], data_fingerprint="5" * 32)
    assert "other data" in parse(render_results_page(results)).rows["07_Old"]["rank"]["text"]


def test_the_runtime_axis_is_logarithmic_and_every_column_sorts() -> None:
    results = round_2025()
    results["04_Slow"] = entry(20.0 * 100, 27.2, 0.25, 16.0)
    text = render_results_page(results)
    plots = re.findall(r'<svg class="plot".*?</svg>', text, re.S)
    assert len(plots) == 2 and "(log scale)" in plots[0]
    ticks = re.findall(r'<text class="tick"[^>]*text-anchor="middle">([^<]*)</text>', plots[0])
    assert ticks == ["1", "10", "100", "1000"]  # runtimes from 1 ms (03_C) to 2000 ms: decades
    assert 'data-col="flags" data-sort="' in text  # Flags sorts by how many


def test_forty_labels_crowded_together_never_overlap() -> None:
    """60 points in a clump: every label placed clear of every other label and every point, or not at all."""
    from esrkit.frontier_svg import Box, label_size, place_labels

    rng = np.random.default_rng(0)
    xy = [(float(x), float(y)) for x, y in zip(rng.normal(300, 25, 60), rng.normal(200, 20, 60))]
    labels = [str(i + 1) for i in range(60)]
    area = Box(58, 40, 646, 394)
    placed = place_labels(xy, labels, area)
    boxes = [p.box for p in placed if p is not None]
    assert len(boxes) == 60  # room enough: every point numbered
    for i, a in enumerate(boxes):
        assert a.inside(area)
        assert not any(a.overlaps(b) for b in boxes[i + 1:])
        assert not any(a.overlaps(Box(x - 4.5, y - 4.5, x + 4.5, y + 4.5)) for x, y in xy)
    assert label_size("10")[0] >= 2 * 0.64 * 10  # wide enough for two digits of the page's font
