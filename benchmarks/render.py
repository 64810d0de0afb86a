"""Render a re-ranked Table 3 (from ``benchmarks.table3.rerank``) as Markdown, CSV, LaTeX, JSON and a PNG.

Every file is written atomically (``esrkit.atomic``): a crash leaves the previous file intact.
Measured rows are marked everywhere; their runtimes carry a dagger unless they come from the GPU the
published times were measured on (``published_device``; the 2023 kit does not name it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, FuncFormatter, MultipleLocator

from benchmarks.table3 import (
    DECIMALS, DERIVED_COLUMNS, EXTRA_COLUMNS, NOTES_KEY, PUBLISHED, PUBLISHED_PSNR_SET, REFERENCE_COLUMNS,
)
from esrkit.atomic import atomic_path, atomic_write
from esrkit.errors import KitError
from esrkit.ranking import pareto_front

DAGGER = "†"
OTHER_SET = "‡"  # a measured PSNR from another set than the published column's
NOT_GPU = "(not a GPU time: unranked)"
DEVICE_FOOTNOTE = (
    "measured on {devices}; published times were measured on the challenge's GPU{published}, so runtime "
    "ranks that mix the two are indicative only — compare via the same-machine ratio to a baseline "
    "measured in the same run{ratio_hint}."
)
UNITS_FOOTNOTE = (
    "Ranks in parentheses (lower is better). FLOPs [G] are multiply-adds as the 2023 kit counts them "
    "(get_model_flops) for a 3×256×256 input; Acts [M] = conv output elements; Mem [M] = peak allocated "
    "GPU memory in MiB on the val split; Model Comp. = rank(Params) + rank(FLOPs); Overall = sum of the "
    "ranks of Ave time, Params, FLOPs, Acts and Mem."
)


# ----------------------------------------------------------------------------------------------
# shared helpers


def _checked(df: pd.DataFrame) -> pd.DataFrame:
    """The rows in main-track order; raises KitError unless ``rerank`` has filled every rank."""
    missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise KitError(f"cannot render: column(s) {', '.join(missing)} missing")
    # Only a row without GPU memory (a CPU run) may lack its Mem. rank and Overall, and only a runtime not timed on
    # a GPU its runtime rank.
    no_mem = df["mem_M"].isna()
    off_gpu = ~_on_gpu(df)
    optional = {"mem_M_rank": no_mem, "overall": no_mem | off_gpu, "overall_rank": no_mem | off_gpu,
                "time_ave_rank": off_gpu}
    empty = [c for c in DERIVED_COLUMNS if (df[c].isna() & ~optional.get(c, False)).any()]
    if empty:
        raise KitError(f"cannot render: {', '.join(empty)} not computed — call benchmarks.table3.rerank first")
    return df.sort_values("time_ave_rank").reset_index(drop=True)


def _on_gpu(df: pd.DataFrame) -> pd.Series:
    """Whether each row's runtime was measured on a GPU (published rows: yes)."""
    if "timed_on_gpu" not in df.columns:
        return pd.Series(True, index=df.index)
    return df["timed_on_gpu"].fillna(True).astype(bool)


def _other_set(row: pd.Series) -> bool:
    """A measured PSNR from another set than the published column's (DIV2K valid): shown marked, never as "Val"."""
    return _is_measured(row) and str(row.get("psnr_set", PUBLISHED_PSNR_SET)) != PUBLISHED_PSNR_SET


def _notes(df: pd.DataFrame, notes: Sequence[str] | None) -> list[str]:
    """Explicit notes, else the ones ``rerank`` attached."""
    return list(notes) if notes is not None else list(df.attrs.get(NOTES_KEY, []))


def _is_measured(row: pd.Series) -> bool:
    return str(row.get("source", PUBLISHED)) != PUBLISHED


def _other_gpu(row: pd.Series, published_device: str | None) -> bool:
    """True when the row's runtime does not come from the GPU of the published times."""
    if not _is_measured(row):
        return False
    return published_device is None or str(row.get("device", "")).casefold() != published_device.casefold()


def _num(value: object, column: str) -> str:
    """A value at the paper's precision; '—' when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    if column in DECIMALS:
        return f"{float(value):.{DECIMALS[column]}f}"
    return str(int(value))


def _ratio(row: pd.Series) -> str:
    """'0.64× RFDN' for rows with a same-run ratio to a baseline ('baseline' for the baseline itself), else ''."""
    value = row.get("time_ratio_to_baseline", np.nan)
    if value is None or pd.isna(value):
        return ""
    base = str(row.get("baseline", "") or "")
    if base == str(row["team"]):
        return "baseline"
    return f"{float(value):.2f}× {base or 'baseline'}"


def _has_ratio(df: pd.DataFrame) -> bool:
    return "time_ratio_to_baseline" in df.columns and df["time_ratio_to_baseline"].notna().any()


def _devices(df: pd.DataFrame, published_device: str | None) -> list[str]:
    """Devices of measured rows whose runtime is from another GPU than the published one."""
    rows = [r for _, r in df.iterrows() if _other_gpu(r, published_device)]
    return sorted({str(r.get("device", "")) or "an unnamed device" for r in rows})


def _other_set_footnote(df: pd.DataFrame) -> str:
    """The footnote of PSNRs measured on another set than the published column's, or ''."""
    sets = sorted({str(r["psnr_set"]) for _, r in df.iterrows() if _other_set(r) and not pd.isna(r["psnr_val"])})
    if not sets:
        return ""
    return (f"PSNR measured on {'; '.join(sets)}, not on {PUBLISHED_PSNR_SET} as the published column: shown for "
            f"reference, not comparable with it (and not plotted against it).")


def _device_footnote(df: pd.DataFrame, published_device: str | None) -> str:
    """The dagger footnote, or '' when no runtime needs one."""
    devices = _devices(df, published_device)
    if not devices:
        return ""
    return DEVICE_FOOTNOTE.format(
        devices=", ".join(devices),
        published=f" ({published_device})" if published_device else " (not named in the 2023 kit)",
        ratio_hint=" (column 'Time ÷ baseline')" if _has_ratio(df) else "",
    )


# (header, cell function(row, mark) -> text) for the Table 3 layout; `mark` wraps a runtime.
Cell = Callable[[pd.Series, Callable[[str, pd.Series], str]], str]


def _ranked(column: str, sub: Callable[[str], str]) -> Cell:
    """A 'value (rank)' cell."""
    return lambda r, mark: _num(r[column], column) + ("" if pd.isna(r[f"{column}_rank"]) else sub(str(int(r[f"{column}_rank"]))))


def _plain(column: str) -> Cell:
    return lambda r, mark: _num(r[column], column)


def _layout(sub: Callable[[str], str]) -> list[tuple[str, Cell]]:
    """The columns of the paper's Table 3, rank shown by ``sub``."""
    return [
        ("Val PSNR [dB]", lambda r, m: _num(r["psnr_val"], "psnr_val") + (OTHER_SET if _other_set(r) and
                                                                            not pd.isna(r["psnr_val"]) else "")),
        ("Test PSNR [dB]", lambda r, m: _num(r["psnr_test"], "psnr_test")),
        ("Val time [ms]", lambda r, m: m(_num(r["time_val"], "time_val"), r)),
        ("Test time [ms]", lambda r, m: m(_num(r["time_test"], "time_test"), r)),
        ("Ave time [ms]", lambda r, m: m(_num(r["time_ave"], "time_ave"), r) + (
            sub(str(int(r["time_ave_rank"]))) if not pd.isna(r["time_ave_rank"]) else " " + NOT_GPU)),
        ("Params [M]", _ranked("params_M", sub)),
        ("FLOPs [G]", _ranked("flops_G", sub)),
        ("Acts [M]", _ranked("acts_M", sub)),
        ("Mem [M]", _ranked("mem_M", sub)),
        ("#Conv", _plain("num_conv")),
        ("Model Comp.", _ranked("model_comp", sub)),
        ("Overall", _ranked("overall", sub)),
    ]


def _row_notes(df: pd.DataFrame) -> list[str]:
    """'team: note' for rows that carry a note."""
    if "note" not in df.columns:
        return []
    return [f"{t}: {n}" for t, n in zip(df["team"], df["note"]) if isinstance(n, str) and n]


# ----------------------------------------------------------------------------------------------
# Markdown / LaTeX


def to_markdown(df: pd.DataFrame, notes: Sequence[str] | None = None, *, published_device: str | None = None,
                title: str = "NTIRE 2023 ESR — Table 3 re-ranked") -> str:
    """Table 3 as a Markdown table ('18.30 (1)'), measured rows in bold with their device, then footnotes and notes."""
    rows = _checked(df)
    layout = _layout(lambda rank: f" ({rank})")
    with_ratio = _has_ratio(rows)
    measured_any = any(_is_measured(r) for _, r in rows.iterrows())

    def mark(text: str, row: pd.Series) -> str:
        return f"{text}{DAGGER}" if _other_gpu(row, published_device) and text != "—" else text

    header = ["Team"] + [h for h, _ in layout] + (["Time ÷ baseline"] if with_ratio else [])
    header += ["Source"] if measured_any else []
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1 - measured_any) + [":---"] * measured_any) + "|"]
    for _, row in rows.iterrows():
        team = str(row["team"]).replace("|", r"\|")
        cells = [f"**{team}** ◆" if _is_measured(row) else team]
        cells += [cell(row, mark) for _, cell in layout]
        if with_ratio:
            cells.append(_ratio(row))
        if measured_any:
            cells.append(f"◆ {row['source']}" if _is_measured(row) else PUBLISHED)
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", UNITS_FOOTNOTE]
    if measured_any:
        lines += ["", "◆ measured with this kit (bold); the other rows are the published values."]
    foot = _device_footnote(rows, published_device)
    if foot:
        lines += ["", f"{DAGGER} {foot}"]
    other = _other_set_footnote(rows)
    if other:
        lines += ["", f"{OTHER_SET} {other}"]
    all_notes = _notes(df, notes) + _row_notes(rows)
    if all_notes:
        lines += ["", "### Notes", ""] + [f"- {n}" for n in all_notes]
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    """Escape LaTeX specials."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, notes: Sequence[str] | None = None, *, published_device: str | None = None) -> str:
    """Table 3 as a booktabs ``table*`` (needs \\usepackage{booktabs}); ranks as ``$_{(1)}$``, measured rows
    in italics with an asterisk, runtimes from another GPU with a dagger."""
    rows = _checked(df)
    layout = _layout(lambda rank: f"$_{{({rank})}}$")

    def mark(text: str, row: pd.Series) -> str:
        return f"{text}$^\\dagger$" if _other_gpu(row, published_device) and text != "—" else text

    with_ratio = _has_ratio(rows)
    header = ["Team"] + [_tex(h) for h, _ in layout] + (["Time / baseline"] if with_ratio else [])
    out = [r"% requires \usepackage{booktabs}", r"\begin{table*}[t]", r"\centering", r"\scriptsize",
           r"\setlength{\tabcolsep}{3pt}", r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
           " & ".join(header) + r" \\", r"\midrule"]
    for _, row in rows.iterrows():
        # '9.00$^\dagger$$_{(1)}$' -> '9.00$^\dagger_{(1)}$'
        cells = [c.replace("—", "--").replace("$$", "") for c in (cell(row, mark) for _, cell in layout)]
        cells = [c.replace(OTHER_SET, r"$^\ddagger$") for c in cells]
        if with_ratio:
            cells.append(_tex(_ratio(row)).replace("×", r"$\times$"))
        team = _tex(str(row["team"]))
        team = rf"\textit{{{team}}}$^\ast$" if _is_measured(row) else team
        out.append(" & ".join([team] + cells) + r" \\")
    caption = _tex(UNITS_FOOTNOTE)
    if any(_is_measured(r) for _, r in rows.iterrows()):
        caption += r" $^\ast$Measured with this kit."
    foot = _device_footnote(rows, published_device)
    if foot:
        caption += r" $^\dagger$" + _tex(foot.replace("—", "--").replace("÷", "/"))
    other = _other_set_footnote(rows)
    if other:
        caption += r" $^\ddagger$" + _tex(other)
    caption = caption.replace("×", r"$\times$")
    out += [r"\bottomrule", r"\end{tabular}", r"\caption{" + caption + "}",
            r"\label{tab:ntire2023-esr-reranked}", r"\end{table*}"]
    for note in _notes(df, notes):
        out.append("% " + note)
    return "\n".join(out) + "\n"


def score_to_markdown(df: pd.DataFrame, notes: Sequence[str] | None = None) -> str:
    """The 2024/2025 score view (from ``score_2024``) as a Markdown table, best first."""
    need = ["team", "Score_runtime", "Score_FLOPs", "Score_params", "Score_final", "Score_rank"]
    if any(c not in df.columns for c in need):
        raise KitError("cannot render the score view: call benchmarks.table3.score_2024 first")
    rows = df.assign(_k=df["Score_rank"].astype("Float64").fillna(np.inf)).sort_values(["_k", "Score_FLOPs"])

    def f(v: object) -> str:
        return "—" if pd.isna(v) else f"{float(v):.4f}"

    lines = ["| # | Team | Score_runtime | Score_FLOPs | Score_params | Score_final |",
             "|---:|:---|---:|---:|---:|---:|"]
    for _, r in rows.iterrows():
        rank = "—" if pd.isna(r["Score_rank"]) else str(int(r["Score_rank"]))
        team = f"**{r['team']}** ◆" if _is_measured(r) else str(r["team"])
        lines.append(f"| {rank} | {team} | {f(r['Score_runtime'])} | {f(r['Score_FLOPs'])} | "
                     f"{f(r['Score_params'])} | {f(r['Score_final'])} |")
    extra = _notes(df, notes)
    return "\n".join(lines + ([""] + [f"- {n}" for n in extra] if extra else [])) + "\n"


# ----------------------------------------------------------------------------------------------
# CSV / JSON


def _columns(df: pd.DataFrame) -> list[str]:
    """Reference column names first (same order as the published CSV), then the kit's extra columns."""
    extra = [c for c in EXTRA_COLUMNS if c in df.columns]
    rest = [c for c in df.columns if c not in REFERENCE_COLUMNS and c not in extra]
    return [c for c in REFERENCE_COLUMNS if c in df.columns] + extra + rest


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Columns as ``_columns``; rows in main-track order once ranked."""
    out = df[_columns(df)]
    if "time_ave_rank" in out.columns and out["time_ave_rank"].notna().all():
        out = out.sort_values("time_ave_rank", kind="stable")
    return out


def to_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write the table with the reference CSV's column names (extra columns after them), atomically."""
    atomic_write(path, _ordered(df).to_csv(index=False, lineterminator="\n"))


def _jsonable(value: object) -> object:
    """Plain Python values; NaN/NA become None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def to_json(df: pd.DataFrame, path: str | Path, notes: Sequence[str] | None = None) -> None:
    """Write ``{"columns", "rows", "notes"}`` as JSON (missing values as null), atomically."""
    table = _ordered(df)
    columns = list(table.columns)
    rows = [{c: _jsonable(v) for c, v in zip(columns, values)} for values in table.itertuples(index=False)]
    payload = {"columns": columns, "rows": rows, "notes": _notes(df, notes)}
    atomic_write(path, json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------------------------
# plot

PUBLISHED_COLOUR = "#4C72B0"
MEASURED_COLOUR = "#E1812C"
FRONTIER_COLOUR = "#2A9D4B"
BUBBLE_PT2_PER_M = 700.0  # marker area (pt^2) per million parameters


def _draw_frontier(ax: Axes, x: np.ndarray, y: np.ndarray, teams: Sequence[str] | None,
                   colour: str = FRONTIER_COLOUR, ls: str = "--") -> None:
    """Step line through the frontier (worse entries lie below/right); frontier teams named in grey."""
    idx = pareto_front(x, y)
    fx, fy = x[idx], y[idx]
    ax.plot(np.append(fx, ax.get_xlim()[1]), np.append(fy, fy[-1]), drawstyle="steps-post",
            color=colour, lw=1.6, ls=ls, zorder=1)
    for i in idx if teams is not None else []:
        ax.annotate(teams[i], (x[i], y[i]), xytext=(4, -9), textcoords="offset points", fontsize=7,
                    color="#555555", zorder=4)


def _log_label(value: float, _pos: int) -> str:
    """Plain tick labels on a log axis: 10, 20, 30, 50, 100, ... (other minor ticks unlabelled)."""
    lead = value / 10 ** math.floor(math.log10(value) + 1e-9)
    return f"{value:g}" if round(lead) in (1, 2, 3, 5) and abs(lead - round(lead)) < 1e-6 else ""


def plot(df: pd.DataFrame, path: str | Path, *, published_device: str | None = None,
         title: str | None = None) -> None:
    """Two panels, Val PSNR vs Ave runtime and vs FLOPs: bubble area ∝ params, efficiency frontier dashed,
    measured entries orange diamonds with labels; written atomically as PNG."""
    for col in ("team", "psnr_val", "time_ave", "flops_G", "params_M"):
        if col not in df.columns:
            raise KitError(f"cannot plot: column {col!r} missing")
    no_psnr = df["team"][df["psnr_val"].isna()].astype(str).tolist()  # untrained, or no validation images
    other_set = [str(r["team"]) for _, r in df.iterrows() if _other_set(r) and not pd.isna(r["psnr_val"])]
    data = df[df["psnr_val"].notna() & ~df["team"].astype(str).isin(other_set)].reset_index(drop=True)
    measured = np.array([_is_measured(r) for _, r in data.iterrows()], dtype=bool)
    other_gpu = np.array([_other_gpu(r, published_device) for _, r in data.iterrows()], dtype=bool)
    teams = data["team"].astype(str).tolist()
    devices = (data["device"] if "device" in data.columns else pd.Series("", index=data.index)).astype(str).to_numpy()
    psnr = data["psnr_val"].to_numpy(dtype=float)
    size = data["params_M"].to_numpy(dtype=float) * BUBBLE_PT2_PER_M

    fig = Figure(figsize=(15, 6.8), dpi=130, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    panels = [("time_ave", "Ave runtime [ms], log scale", "PSNR vs runtime"),
              ("flops_G", "FLOPs [G multiply-adds, 3×256×256 input], log scale", "PSNR vs FLOPs")]
    for ax, (col, xlabel, subtitle) in zip(axes, panels):
        x = data[col].to_numpy(dtype=float)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_log_label))
        ax.xaxis.set_minor_formatter(FuncFormatter(_log_label))
        ax.scatter(x[~measured], psnr[~measured], s=size[~measured], c=PUBLISHED_COLOUR, alpha=0.45,
                   edgecolors="white", linewidths=0.8, zorder=2)
        ax.scatter(x[measured], psnr[measured], s=size[measured], c=MEASURED_COLOUR, marker="D", alpha=0.9,
                   edgecolors="black", linewidths=1.0, zorder=3)
        span = np.log10(x.max() / x.min()) if len(x) > 1 else 1.0
        ax.set_xlim(x.min() / 10 ** (0.06 * span), x.max() * 10 ** (0.12 * span))
        if col == "time_ave":
            # runtimes from different GPUs are not comparable: one frontier per machine
            same = ~other_gpu
            if same.any():
                _draw_frontier(ax, x[same], psnr[same], [t for t, s in zip(teams, same) if s])
            for dev in sorted(set(devices[other_gpu])):
                on_dev = other_gpu & (devices == dev)
                if on_dev.sum() > 1:
                    _draw_frontier(ax, x[on_dev], psnr[on_dev], None, MEASURED_COLOUR, ":")
        else:
            _draw_frontier(ax, x, psnr, teams)
        for i in np.flatnonzero(measured):
            label = teams[i] + (DAGGER if col == "time_ave" and other_gpu[i] else "")
            ratio = _ratio(data.iloc[i]) if col == "time_ave" else ""
            if ratio:
                label += "\n(baseline)" if ratio == "baseline" else f"\ntime = {ratio}"
            ax.annotate(label, (x[i], psnr[i]), xytext=(8, 8), textcoords="offset points", fontsize=9,
                        fontweight="bold", color="#8A4A0F", zorder=5,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75),
                        arrowprops=dict(arrowstyle="-", color="#8A4A0F", lw=0.7))
        ax.set_title(subtitle, fontsize=12)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="major", color="#DDDDDD", lw=0.8)
        ax.grid(True, which="minor", color="#F0F0F0", lw=0.5)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_ylabel("Val PSNR [dB] (RGB, DIV2K val)")
    pad = max(0.02, 0.08 * (psnr.max() - psnr.min()))
    axes[0].set_ylim(psnr.min() - pad, psnr.max() + 1.5 * pad)
    span_db = axes[0].get_ylim()[1] - axes[0].get_ylim()[0]
    step = next((v for v in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0) if span_db / v <= 10), 5.0)
    axes[0].yaxis.set_major_locator(MultipleLocator(step))
    axes[0].yaxis.set_major_formatter(FormatStrFormatter("%.2f"))

    other_devices = _devices(data, published_device)
    if other_devices:
        axes[0].text(0.01, 0.01, f"{DAGGER} measured on {', '.join(other_devices)}: not the challenge's GPU — "
                     "runtimes\nare not directly comparable; use the same-run ratio to a baseline.",
                     transform=axes[0].transAxes, fontsize=8, color="#8A4A0F", va="bottom")
    unplotted = ([f"no PSNR (untrained or no validation set): {', '.join(no_psnr)}"] if no_psnr else []) + (
        [f"PSNR on another set than DIV2K valid: {', '.join(other_set)}"] if other_set else [])
    if unplotted:
        axes[1].text(0.01, 0.99, "not plotted -- " + "; ".join(unplotted), transform=axes[1].transAxes, fontsize=8,
                     color="#8A4A0F", va="top")

    handles = [Line2D([], [], ls="", marker="o", ms=9, mfc=PUBLISHED_COLOUR, mec="white", alpha=0.6,
                      label="published (NTIRE 2023 Table 3)")]
    if measured.any():
        dev = ", ".join(sorted({str(d) for d in data.loc[measured, "device"]})) if "device" in data else ""
        handles.append(Line2D([], [], ls="", marker="D", ms=8, mfc=MEASURED_COLOUR, mec="black",
                              label=f"measured with this kit ({dev})" if dev else "measured with this kit"))
    frontier = "efficiency (Pareto) frontier" + (" (left: published runtimes only)" if other_gpu.any() else "")
    handles.append(Line2D([], [], color=FRONTIER_COLOUR, ls="--", lw=1.6, label=frontier))
    if other_gpu.sum() > 1:
        handles.append(Line2D([], [], color=MEASURED_COLOUR, ls=":", lw=1.6, label="frontier of measured runtimes"))
    sizes = [Line2D([], [], ls="", marker="o", ms=math.sqrt(m * BUBBLE_PT2_PER_M), mfc="none", mec="#777777",
                    label=f"{m:g} M params") for m in (0.1, 0.3, 1.0)]
    axes[1].legend(handles=sizes, loc="lower right", labelspacing=1.6, borderpad=1.0, fontsize=9,
                   title="bubble area", title_fontsize=9, frameon=True, framealpha=0.9)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9,
               handletextpad=0.4, columnspacing=1.4)
    if title is None:
        title = "NTIRE 2023 Efficient SR (Table 3)" + (" with measured entries" if measured.any() else "")
    fig.suptitle(title + "  —  up and to the left is better; bubble area ∝ parameters", fontsize=13)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
