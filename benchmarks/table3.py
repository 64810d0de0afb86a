"""NTIRE 2023 ESR Table 3 (MLRN paper): load the published table, add measured rows, recompute the ranks.

Ranking scheme (2022 README, 2023 report): main track = runtime rank; "Model Comp." = rank(Params) +
rank(FLOPs); "Overall" = rank(Time) + rank(Params) + rank(FLOPs) + rank(Acts) + rank(Mem); every
rank ascending. The paper does not say how ties are broken. The rules below are the simplest ones
that reproduce every published rank of Table 3 (checked by ``tie_evidence`` and the tests):

- ranks are ordinal (1..N, never shared) -- unlike 2022's sub-track ranks, which share the minimum;
- a tie in Params/FLOPs/Acts/Mem or in Model Comp. goes to the better runtime rank
  (Params 0.245: DFCDN 13 / FRL Team 2 14; 0.307: CMVG 21 / AIIA-SR 22; Model Comp. 11: Set5 Baby 5 /
  Dase-IDEALab 6; 31: R.I.P. ShopeeVideo 15 / AVC2_CMHI_SR 16);
- a tie in Overall goes to the lower Model Comp. score (all six ties: 67, 70, 78, 84, 90, 99). The
  Params rank and the FLOPs rank order those six ties the same way, so which key the organisers used
  is unknown; runtime does not fit (67: NoahTerminalCV A, runtime 15, is ranked above Zapdos, 2).

Values are ranked as printed (Params to 3 decimals, the others to 2), so a measured row cannot win a
tie on digits the published rows do not have.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from esrkit.errors import KitError
from esrkit.paths import shared_path
from esrkit.ranking import ordinal, score_from_ratios, track_ranks

REFERENCE_NAME = "ntire2023_esr_table3.csv"

REFERENCE_COLUMNS: tuple[str, ...] = (
    "team", "time_ave", "time_ave_rank", "time_val", "time_test", "psnr_val", "psnr_test",
    "params_M", "params_M_rank", "flops_G", "flops_G_rank", "acts_M", "acts_M_rank",
    "mem_M", "mem_M_rank", "model_comp", "model_comp_rank", "overall", "overall_rank", "num_conv",
)
RANKED_METRICS: tuple[str, ...] = ("time_ave", "params_M", "flops_G", "acts_M", "mem_M")
SUM_COLUMNS: tuple[str, ...] = ("model_comp", "overall")
RANK_COLUMNS: tuple[str, ...] = tuple(f"{c}_rank" for c in RANKED_METRICS + SUM_COLUMNS)
DERIVED_COLUMNS: tuple[str, ...] = RANK_COLUMNS + SUM_COLUMNS
INT_COLUMNS: tuple[str, ...] = DERIVED_COLUMNS + ("num_conv",)
FLOAT_COLUMNS: tuple[str, ...] = tuple(
    c for c in REFERENCE_COLUMNS if c != "team" and c not in INT_COLUMNS
)
# Extra columns (after the reference ones) that every frame of this module carries.
EXTRA_COLUMNS: tuple[str, ...] = ("source", "device", "note", "time_ratio_to_baseline", "baseline", "psnr_set",
                                   "timed_on_gpu")
PUBLISHED_PSNR_SET = "DIV2K valid (100 images)"  # what Table 3's Val PSNR column was measured on

DECIMALS: dict[str, int] = {
    "time_ave": 2, "time_val": 2, "time_test": 2, "psnr_val": 2, "psnr_test": 2,
    "params_M": 3, "flops_G": 2, "acts_M": 2, "mem_M": 2,
}
LABELS: dict[str, str] = {
    "time_ave": "Runtime", "params_M": "Params", "flops_G": "FLOPs", "acts_M": "Acts",
    "mem_M": "Mem", "model_comp": "Model Comp.", "overall": "Overall",
}
UNITS: dict[str, str] = {
    "time_ave": " ms", "params_M": " M", "flops_G": " G", "acts_M": " M", "mem_M": " M",
    "model_comp": "", "overall": "",
}
NOTES_KEY = "notes"  # df.attrs[NOTES_KEY]: list[str] attached by rerank / score_2024
PUBLISHED = "published"
NOT_STATED = "rule not stated in the paper"


def default_path() -> Path:
    """Path of the published Table 3 CSV: ``$ESRKIT_SHARED/reference/`` or ``<repo>/../shared/reference/``."""
    return shared_path("reference", REFERENCE_NAME)


def _parse_number(text: str, path: Path, line: int, team: str, column: str, integer: bool) -> float:
    """Parse one cell; a bad cell raises KitError naming file, line, team and column."""
    where = f"{path}: line {line} (team {team!r}), column {column!r}"
    try:
        value = float(text)
    except ValueError:
        raise KitError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise KitError(f"{where}: {text!r} is not a finite number")
    if integer and not value.is_integer():
        raise KitError(f"{where}: {text!r} is not a whole number")
    return value


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate the published Table 3; adds ``source`` = "published" and the empty extra columns."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise KitError(f"{path}: file not found (set ESRKIT_SHARED to the shared folder)")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise KitError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REFERENCE_COLUMNS if c not in raw.columns]
    if missing:
        raise KitError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REFERENCE_COLUMNS)}")
    if raw.empty:
        raise KitError(f"{path}: no rows")

    records: list[dict[str, object]] = []
    seen: set[str] = set()
    for i, row in enumerate(raw.to_dict("records")):
        line = i + 2  # line 1 is the header
        team = str(row["team"]).strip()
        if not team:
            raise KitError(f"{path}: line {line}, column 'team': empty team name")
        if team in seen:
            raise KitError(f"{path}: line {line}, column 'team': duplicate team {team!r}")
        seen.add(team)
        rec: dict[str, object] = {"team": team}
        for col in REFERENCE_COLUMNS[1:]:
            rec[col] = _parse_number(str(row[col]).strip(), path, line, team, col, col in INT_COLUMNS)
        records.append(rec)
    df = _typed(pd.DataFrame.from_records(records, columns=list(REFERENCE_COLUMNS)))
    df["source"] = PUBLISHED
    df["device"] = ""
    df["note"] = ""
    df["time_ratio_to_baseline"] = np.nan
    df["baseline"] = ""
    df["psnr_set"] = PUBLISHED_PSNR_SET
    df["timed_on_gpu"] = True
    return df


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Cast the reference columns to their dtypes (nullable Int64 for ranks, sums and #conv)."""
    for col in FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col]).astype("float64")
    for col in INT_COLUMNS:
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    return df


@dataclass(frozen=True, kw_only=True)
class MeasuredRow:
    """One entry measured with this kit. Without ``time_test`` the runtime ranked is ``time_val`` (said in ``note``)."""

    team: str
    time_val: float
    time_test: float | None = None
    psnr_val: float | None  # None: untrained weights or no validation images
    psnr_test: float | None = None
    params_M: float
    flops_G: float
    acts_M: float
    mem_M: float | None  # None: not measured on a GPU (ranked in no memory column, no Overall)
    num_conv: int
    device: str
    note: str = ""
    time_ratio_to_baseline: float | None = None  # runtime / baseline runtime, both measured in the same run
    baseline: str = ""  # the team/entry that ratio refers to
    psnr_set: str = PUBLISHED_PSNR_SET  # what psnr_val was measured on; another set is shown marked, never as "Val"
    timed_on_gpu: bool = True  # False (a CPU, Apple MPS): the runtime is shown, never ranked among the GPU times

    def __post_init__(self) -> None:
        if not self.team.strip():
            raise KitError("MeasuredRow: empty team name")
        if not self.device.strip():
            raise KitError(f"MeasuredRow {self.team!r}: device is empty (name the GPU the runtime came from)")
        for name in ("time_val", "time_test", "psnr_val", "psnr_test", "params_M", "flops_G",
                     "acts_M", "mem_M", "time_ratio_to_baseline"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise KitError(f"MeasuredRow {self.team!r}, field {name!r}: {value!r} must be a positive number")
        if self.time_ratio_to_baseline is not None and not self.baseline:
            raise KitError(f"MeasuredRow {self.team!r}: time_ratio_to_baseline given without naming its baseline")

    @property
    def time_ave(self) -> float:
        """Mean of the val and test runtimes, as the kits compute it; ``time_val`` when no test split was run."""
        return self.time_val if self.time_test is None else (self.time_val + self.time_test) / 2

    def record(self) -> dict[str, object]:
        """The row in this module's column layout (ranks left empty)."""
        notes = [self.note] if self.note else []
        if self.time_test is None:
            notes.append("Ave time = Val time (no test split measured)")
        return {
            "team": self.team, "time_ave": self.time_ave, "time_val": self.time_val,
            "time_test": np.nan if self.time_test is None else self.time_test,
            "psnr_val": self.psnr_val, "psnr_test": np.nan if self.psnr_test is None else self.psnr_test,
            "params_M": self.params_M, "flops_G": self.flops_G, "acts_M": self.acts_M,
            "mem_M": self.mem_M, "num_conv": self.num_conv, "source": f"measured ({self.device})",
            "device": self.device, "note": "; ".join(notes),
            "time_ratio_to_baseline": np.nan if self.time_ratio_to_baseline is None else self.time_ratio_to_baseline,
            "baseline": self.baseline,
            "psnr_set": self.psnr_set,
            "timed_on_gpu": self.timed_on_gpu,
        }


def merge(published: pd.DataFrame, measured_rows: Iterable[MeasuredRow]) -> pd.DataFrame:
    """Append measured rows to the published table. Ranks and sums are cleared: call ``rerank`` next."""
    rows = list(measured_rows)
    measured = pd.DataFrame.from_records([r.record() for r in rows])
    df = pd.concat([published, measured], ignore_index=True) if rows else published.copy()
    dupes = df["team"][df["team"].duplicated()].tolist()
    if dupes:
        raise KitError(
            f"team name(s) {', '.join(map(repr, dupes))} appear twice; name a measured entry apart from "
            "the published one, e.g. 'MegSR (measured)'"
        )
    for col in DERIVED_COLUMNS:
        df[col] = pd.NA
    df = _typed(df)[list(REFERENCE_COLUMNS) + list(EXTRA_COLUMNS)]
    df.attrs = {}
    return df


def _as_printed(values: pd.Series, column: str) -> np.ndarray:
    """Values rounded to their printed precision, as integers so that equal prints compare equal."""
    return np.rint(values.to_numpy(dtype=float) * 10 ** DECIMALS[column]).astype(np.int64)


def _fmt(value: float, column: str) -> str:
    """A value as the paper prints it ("unranked" for a rank left empty: a runtime not timed on a GPU)."""
    if pd.isna(value):
        return "unranked"
    if column in DECIMALS:
        return f"{value:.{DECIMALS[column]}f}"
    return f"{int(value)}"


def _tie_notes(df: pd.DataFrame, key: np.ndarray, column: str, deciders: Sequence[tuple[str, str]],
               rule: str) -> list[str]:
    """One note per group of rows sharing ``key``: who got which rank and what decided it."""
    notes = []
    rank_col = f"{column}_rank"
    for value in np.unique(key[pd.Series(key).duplicated(keep=False).to_numpy()]):
        members = df[key == value].sort_values(rank_col)
        who = " / ".join(f"{t} ({r})" for t, r in zip(members["team"], members[rank_col]))
        decided = []
        for dcol, dlabel in deciders:
            vals = members[dcol].tolist()
            decided.append(f"{dlabel} {', '.join(_fmt(v, dcol) for v in vals)}")
            if len(set(vals)) == len(vals):
                break
        shown = _fmt(members[column].iloc[0], column) + UNITS.get(column, "")
        why = f" ({'; then '.join(decided)})" if decided else ""
        notes.append(f"{LABELS[column]} tie {shown}: {who} ordered by {rule}{why} — {NOT_STATED}")
    return notes


def rerank(df: pd.DataFrame) -> pd.DataFrame:
    """Recompute every rank, Model Comp. and Overall with the published tie rules (module docstring).

    Returns a copy; ``result.attrs["notes"]`` lists the tie rules used and every tie they decided.
    """
    for col in ("team",) + RANKED_METRICS:
        if col not in df.columns:
            raise KitError(f"rerank: column {col!r} is missing")
        required = col in ("team", "time_ave", "params_M", "flops_G", "acts_M")
        bad = df["team"][df[col].isna()].tolist() if required and col != "team" else []
        if bad:
            raise KitError(f"rerank: column {col!r} is empty for team(s) {', '.join(map(repr, bad))}")
    out = df.copy().reset_index(drop=True)
    unmeasured_mem = out["mem_M"].isna().to_numpy()
    printed = {c: _as_printed(out[c].fillna(0), c) for c in RANKED_METRICS}
    # A runtime not measured on a GPU (a CPU run) is shown but never ranked among the GPU times (esrkit.ranking).
    on_gpu = (out["timed_on_gpu"].fillna(True).astype(bool).to_numpy() if "timed_on_gpu" in out.columns
              else np.ones(len(out), dtype=bool))
    ranks = track_ranks(printed["time_ave"], printed["params_M"], printed["flops_G"], printed["acts_M"],
                        np.where(unmeasured_mem, np.nan, printed["mem_M"]), on_gpu)
    for col, values in (("time_ave_rank", ranks.time), ("params_M_rank", ranks.params), ("flops_G_rank", ranks.flops),
                        ("acts_M_rank", ranks.acts), ("mem_M_rank", ranks.mem), ("model_comp", ranks.model_comp),
                        ("model_comp_rank", ranks.model_comp_rank), ("overall", ranks.overall),
                        ("overall_rank", ranks.overall_rank)):
        out[col] = pd.array([None if np.isnan(v) else int(v) for v in values], dtype="Int64")
    model_comp = ranks.model_comp.astype(np.int64)
    overall = pd.Series(np.nan_to_num(ranks.overall).astype(np.int64), index=out.index)
    ranked = np.isfinite(ranks.overall)  # Overall sums the memory and runtime ranks: none without either

    by_runtime = [("time_ave_rank", "runtime rank")]
    tie_notes = _tie_notes(out[on_gpu], printed["time_ave"][on_gpu], "time_ave", [], "table order, no rule known")
    for col in RANKED_METRICS[1:]:
        rows = ~unmeasured_mem if col == "mem_M" else np.ones(len(out), dtype=bool)
        tie_notes += _tie_notes(out[rows], printed[col][rows], col, by_runtime, "the better runtime rank")
    tie_notes += _tie_notes(out, model_comp, "model_comp", by_runtime, "the better runtime rank")
    tie_notes += _tie_notes(out[ranked], overall.to_numpy(dtype=np.int64)[ranked], "overall",
                            [("model_comp", "Model Comp."), ("time_ave_rank", "runtime rank")],
                            "the lower Model Comp. score")
    notes: list[str] = []
    if tie_notes:
        notes.append(
            "Tie rules (inferred from the published Table 3, not stated in the paper): ranks are ordinal; "
            "ties in Params/FLOPs/Acts/Mem and in Model Comp. go to the better runtime rank, i.e. table order "
            "(fits the 2 Params and 2 Model Comp. ties; Acts or #Conv would order them alike); ties in Overall "
            "go to the lower Model Comp. score (fits all 6 Overall ties; the Params or FLOPs rank fit them "
            "equally, so the organisers' actual key is unknown); an Overall tie that also ties in Model Comp. "
            "goes to the better runtime rank (no published tie tests this)."
        )
    if not on_gpu.all():
        notes.append("Not ranked by runtime: " + ", ".join(out["team"][~on_gpu]) + " (timed on "
                     + ", ".join(sorted({str(d) for d in out["device"][~on_gpu]})) + ", not a GPU): their runtimes "
                     "are shown but not placed among the published GPU runtimes; the same-run ratio to the baseline "
                     "is what compares them.")
    if unmeasured_mem.any():
        notes.append("No GPU memory for " + ", ".join(out["team"][unmeasured_mem]) + " (not run on a GPU): "
                     "no Mem. rank and no Overall score for it.")
    if "source" in out.columns and (out["source"] != PUBLISHED).any():
        notes.append("Measured values are ranked at the published precision (Params 3 decimals, others 2).")
    out.attrs = {NOTES_KEY: notes + tie_notes}
    return out


def tie_evidence(df: pd.DataFrame) -> dict[str, list[str]]:
    """For each rank column with ties, the columns (with direction) that order every tie as ``df`` ranks it.

    Run on the published table it shows which tie rules the data allow; see the module docstring.
    """
    candidates = [c for c in REFERENCE_COLUMNS[1:] if c in df.columns]
    evidence: dict[str, list[str]] = {}
    for col in RANKED_METRICS + SUM_COLUMNS:
        rank_col = f"{col}_rank"
        key = _as_printed(df[col], col) if col in DECIMALS else df[col].to_numpy()
        groups = [df[key == v].sort_values(rank_col) for v in np.unique(key) if (key == v).sum() > 1]
        if not groups:
            continue
        fits = []
        for cand in candidates:
            if cand in (col, rank_col):
                continue
            for sign, arrow in ((1, "ascending"), (-1, "descending")):
                if all((np.diff(g[cand].to_numpy(dtype=float)) * sign > 0).all() for g in groups):
                    fits.append(f"{cand} {arrow}")
        evidence[rank_col] = fits
    return evidence


def _find_team(df: pd.DataFrame, team: str) -> pd.Series:
    """The row named ``team``; an unknown name raises KitError with the closest names."""
    hit = df[df["team"] == team]
    if hit.empty:
        close = difflib.get_close_matches(team, df["team"].tolist(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KitError(f"baseline {team!r} is not a row of the table{hint}")
    return hit.iloc[0]


def score_2024(df: pd.DataFrame, baseline_row: str) -> pd.DataFrame:
    """The NTIRE 2024/2025 score relative to the row named ``baseline_row`` (lower is better).

    Score_X = exp(2 * X / X_baseline) for X in runtime (time_ave), FLOPs, params;
    Score_final = 0.7 * Score_runtime + 0.15 * Score_FLOPs + 0.15 * Score_params.
    A runtime is compared with the baseline's only when both come from the same machine (same
    ``source``) or when the row carries ``time_ratio_to_baseline`` measured against that baseline;
    otherwise Score_runtime, Score_final and Score_rank stay empty and a note says why.
    """
    base = _find_team(df, baseline_row)
    out = df.copy().reset_index(drop=True)
    source = out["source"] if "source" in out.columns else pd.Series(PUBLISHED, index=out.index)
    ratio = pd.Series(np.nan, index=out.index)
    same_machine = (source == base.get("source", PUBLISHED)).to_numpy()
    ratio[same_machine] = out["time_ave"][same_machine] / base["time_ave"]
    if "time_ratio_to_baseline" in out.columns:
        has_ratio = out["time_ratio_to_baseline"].notna().to_numpy()
        own = (~same_machine) & (out["baseline"] == baseline_row).to_numpy() & has_ratio
        ratio[own] = out["time_ratio_to_baseline"][own]
    score = score_from_ratios(ratio, out["flops_G"] / base["flops_G"], out["params_M"] / base["params_M"])
    out["Score_runtime"], out["Score_FLOPs"], out["Score_params"] = score.runtime, score.flops, score.params
    out["Score_final"] = score.final
    scored = out["Score_final"].notna().to_numpy()
    ranks = pd.array([pd.NA] * len(out), dtype="Int64")
    if scored.any():
        ranks[scored] = ordinal(out["Score_final"].to_numpy()[scored], np.arange(scored.sum()))
    out["Score_rank"] = ranks
    notes = list(df.attrs.get(NOTES_KEY, []))
    notes.append(f"2024/2025 score relative to {baseline_row} (Score_final of the baseline = e^2 = {math.e ** 2:.4f}).")
    unscored = out["team"][~scored].tolist()
    if unscored:
        shown = ", ".join(unscored[:5]) + (", ..." if len(unscored) > 5 else "")
        notes.append(
            f"No runtime score for {len(unscored)} row(s) ({shown}): "
            f"their runtime was not measured on the same machine as {baseline_row} and carries no ratio to it."
        )
    out.attrs = {NOTES_KEY: notes}
    return out
