"""Table 3 ranking: the published table reproduces itself; measured rows shift ranks as worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.table3 import (
    DERIVED_COLUMNS, NOTES_KEY, REFERENCE_COLUMNS, MeasuredRow, load_published, merge, rerank,
    score_2024, tie_evidence,
)
from esrkit.errors import KitError
from tests.conftest import SHARED, require

TABLE3 = SHARED / "reference" / "ntire2023_esr_table3.csv"


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return load_published(require(TABLE3))


def _row(team: str, **kw: float) -> MeasuredRow:
    base = dict(time_val=10.0, psnr_val=29.0, params_M=0.3, flops_G=20.0, acts_M=80.0, mem_M=300.0, num_conv=40)
    base.update(kw)
    return MeasuredRow(team=team, device="Test GPU", **base)


# ---------------------------------------------------------------------------------------------
# the published table


def test_published_loads_with_source(published: pd.DataFrame) -> None:
    assert len(published) == 32
    assert list(published.columns[: len(REFERENCE_COLUMNS)]) == list(REFERENCE_COLUMNS)
    assert (published["source"] == "published").all()


def test_default_path_follows_env(monkeypatch: pytest.MonkeyPatch) -> None:
    require(TABLE3)
    monkeypatch.setenv("ESRKIT_SHARED", str(SHARED))
    assert len(load_published()) == 32


def test_recomputing_reproduces_every_published_rank_and_sum(published: pd.DataFrame) -> None:
    again = rerank(published)
    for col in DERIVED_COLUMNS:
        wrong = again.loc[again[col] != published[col], ["team", col]]
        assert wrong.empty, f"{col} differs from the published table:\n{wrong}\n{published.loc[wrong.index, col]}"
    assert (again["model_comp"] == again["params_M_rank"] + again["flops_G_rank"]).all()


def test_ranks_do_not_depend_on_row_order(published: pd.DataFrame) -> None:
    shuffled = published.sample(frac=1.0, random_state=0).reset_index(drop=True)
    again = rerank(shuffled).set_index("team").loc[published["team"]]
    for col in DERIVED_COLUMNS:
        assert (again[col].to_numpy() == published[col].to_numpy()).all(), col


def test_published_ties_fit_the_chosen_rules(published: pd.DataFrame) -> None:
    ev = tie_evidence(published)
    assert "time_ave_rank ascending" in ev["params_M_rank"]
    assert "time_ave_rank ascending" in ev["model_comp_rank"]
    assert "model_comp ascending" in ev["overall_rank"]
    # runtime does not explain the Overall ties (67: NoahTerminalCV A, runtime 15, above Zapdos, 2)
    assert "time_ave_rank ascending" not in ev["overall_rank"]
    assert set(ev) == {"params_M_rank", "model_comp_rank", "overall_rank"}


def test_every_published_tie_is_noted(published: pd.DataFrame) -> None:
    notes = rerank(published).attrs[NOTES_KEY]
    ties = [n for n in notes if " tie " in n and not n.startswith("Tie rules")]
    assert len(ties) == 2 + 2 + 6
    assert all("not stated" in n for n in ties)
    assert any(n.startswith("Overall tie 67: NoahTerminalCV A (9) / Zapdos (10)") for n in notes)
    assert any(n.startswith("Overall tie 78: NJUST_E (16) / FRL Team 3 (17) / FRL Team 1 (18)") for n in notes)
    assert any(n.startswith("Model Comp. tie 31: R.I.P. ShopeeVideo (15) / AVC2_CMHI_SR (16)") for n in notes)
    assert any(n.startswith("Params tie 0.307 M: CMVG (21) / AIIA-SR (22)") for n in notes)


# ---------------------------------------------------------------------------------------------
# a tiny hand-made table

TINY = ",".join(REFERENCE_COLUMNS) + """
A,10.00,1,11.00,9.00,29.00,27.00,0.300,3,20.00,3,50.00,1,300.00,3,6,3,11,3,10
B,20.00,2,21.00,19.00,29.01,27.01,0.200,2,15.00,2,60.00,2,200.00,2,4,2,10,2,20
C,30.00,3,31.00,29.00,29.02,27.02,0.100,1,10.00,1,70.00,3,100.00,1,2,1,9,1,30
"""


def test_measured_row_shifts_ranks_as_worked_out_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    path.write_text(TINY)
    tiny = load_published(path)
    assert (rerank(tiny)[list(DERIVED_COLUMNS)].to_numpy() == tiny[list(DERIVED_COLUMNS)].to_numpy()).all()

    # M: runtime 15 (val only), params 0.2004 prints as 0.200 = B's -> tie goes to the better runtime (M)
    m = _row("M", time_val=15.0, params_M=0.2004, flops_G=12.0, acts_M=55.0, mem_M=250.0)
    merged = merge(tiny, [m])
    assert merged["overall_rank"].isna().all()  # stale published ranks are cleared
    out = rerank(merged).set_index("team")
    expected = {  # time params flops acts mem | comp comp_rank | overall overall_rank
        "A": (1, 4, 4, 1, 4, 8, 4, 14, 4),
        "B": (3, 3, 3, 3, 2, 6, 3, 14, 3),  # Overall 14 tie with A: lower Model Comp. (6 < 8)
        "C": (4, 1, 1, 4, 1, 2, 1, 11, 1),  # Overall 11 tie with M: lower Model Comp. (2 < 4)
        "M": (2, 2, 2, 2, 3, 4, 2, 11, 2),
    }
    cols = ["time_ave_rank", "params_M_rank", "flops_G_rank", "acts_M_rank", "mem_M_rank",
            "model_comp", "model_comp_rank", "overall", "overall_rank"]
    for team, ranks in expected.items():
        assert tuple(int(v) for v in out.loc[team, cols]) == ranks, team
    assert out.loc["M", "time_ave"] == 15.0 and "Ave time = Val time" in out.loc["M", "note"]
    assert out.loc["M", "source"] == "measured (Test GPU)"
    notes = rerank(merged).attrs[NOTES_KEY]
    assert any(n.startswith("Params tie 0.200 M: M (2) / B (3)") for n in notes)
    assert any(n.startswith("Overall tie 11: C (1) / M (2)") for n in notes)


def test_overall_tie_with_equal_model_comp_falls_back_to_runtime(tmp_path: Path) -> None:
    path = tmp_path / "tiny.csv"
    path.write_text(TINY)
    # X: runtime 1st, params 1st, FLOPs 2nd, acts 4th, mem 3rd -> Model Comp. 3 and Overall 11, both equal to C's
    x = _row("X", time_val=5.0, params_M=0.05, flops_G=12.0, acts_M=75.0, mem_M=250.0)
    out = rerank(merge(load_published(path), [x]))
    by_team = out.set_index("team")
    assert [int(by_team.loc[t, "model_comp"]) for t in "XC"] == [3, 3]
    assert [int(by_team.loc[t, "overall"]) for t in "XC"] == [11, 11]
    assert [int(by_team.loc[t, "overall_rank"]) for t in "XCBA"] == [1, 2, 3, 4]
    assert [int(by_team.loc[t, "model_comp_rank"]) for t in "XCBA"] == [1, 2, 3, 4]
    assert any(n.startswith("Overall tie 11: X (1) / C (2)") and "then runtime rank 1, 4" in n
               for n in out.attrs[NOTES_KEY])


def test_merge_rejects_duplicate_team(published: pd.DataFrame) -> None:
    with pytest.raises(KitError, match="MegSR"):
        merge(published, [_row("MegSR")])


def test_measured_row_validates() -> None:
    with pytest.raises(KitError, match="params_M"):
        _row("bad", params_M=-1.0)
    with pytest.raises(KitError, match="device"):
        MeasuredRow(team="x", time_val=1, psnr_val=29, params_M=0.1, flops_G=1, acts_M=1, mem_M=1, num_conv=1,
                    device="")


# ---------------------------------------------------------------------------------------------
# 2024/2025 score


def test_score_of_baseline_itself_is_e_squared(published: pd.DataFrame) -> None:
    scored = score_2024(rerank(published), "MegSR").set_index("team")
    assert math.isclose(scored.loc["MegSR", "Score_final"], 0.7 * math.e**2 + 0.15 * math.e**2 + 0.15 * math.e**2)
    assert math.isclose(scored.loc["MegSR", "Score_final"], math.e**2)
    z = scored.loc["Zapdos"]
    assert math.isclose(z["Score_runtime"], math.exp(2 * 18.59 / 18.30))
    assert math.isclose(z["Score_final"], 0.7 * z["Score_runtime"] + 0.15 * z["Score_FLOPs"] + 0.15 * z["Score_params"])
    ranks = scored["Score_rank"].astype(int)
    assert sorted(ranks) == list(range(1, 33))
    assert (np.diff(scored.sort_values("Score_rank")["Score_final"].to_numpy()) >= 0).all()


def test_score_needs_same_machine_or_ratio(published: pd.DataFrame) -> None:
    rows = [_row("RFDN (H100)", time_val=12.0, params_M=0.433, flops_G=27.1, time_ratio_to_baseline=1.0,
                 baseline="RFDN (H100)"),
            _row("Mine", time_val=6.0, time_ratio_to_baseline=0.5, baseline="RFDN (H100)")]
    df = rerank(merge(published, rows))
    scored = score_2024(df, "RFDN (H100)").set_index("team")
    assert math.isclose(scored.loc["RFDN (H100)", "Score_final"], math.e**2)
    assert math.isclose(scored.loc["Mine", "Score_runtime"], math.exp(1.0))
    assert scored.loc["MegSR", "Score_final"] != scored.loc["MegSR", "Score_final"]  # NaN: other GPU
    assert pd.isna(scored.loc["MegSR", "Score_rank"])
    assert list(scored["Score_rank"].dropna().astype(int).sort_values()) == [1, 2]
    assert any("No runtime score for 32 row(s)" in n for n in scored.attrs[NOTES_KEY])
    with pytest.raises(KitError, match="did you mean"):
        score_2024(df, "RFDN H100")


# ---------------------------------------------------------------------------------------------
# malformed files


def _write_bad(tmp_path: Path, transform) -> Path:
    table = pd.read_csv(require(TABLE3), dtype=str, keep_default_na=False)
    table = transform(table)
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    return path


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = _write_bad(tmp_path, lambda t: t.drop(columns=["flops_G"]))
    with pytest.raises(KitError) as err:
        load_published(path)
    assert "bad.csv" in str(err.value) and "flops_G" in str(err.value)


def test_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    def spoil(t: pd.DataFrame) -> pd.DataFrame:
        t.loc[t["team"] == "CMVG", "acts_M"] = "81,55"
        return t

    with pytest.raises(KitError) as err:
        load_published(_write_bad(tmp_path, spoil))
    msg = str(err.value)
    assert "bad.csv" in msg and "'CMVG'" in msg and "'acts_M'" in msg and "line 10" in msg and "81,55" in msg


def test_fractional_rank_and_missing_file_are_errors(tmp_path: Path) -> None:
    def spoil(t: pd.DataFrame) -> pd.DataFrame:
        t.loc[t["team"] == "Zapdos", "overall_rank"] = "9.5"
        return t

    with pytest.raises(KitError, match=r"Zapdos.*overall_rank.*whole number"):
        load_published(_write_bad(tmp_path, spoil))
    with pytest.raises(KitError, match="not found"):
        load_published(tmp_path / "nope.csv")
