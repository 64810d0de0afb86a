"""The NTIRE ESR ranking rules on plain numbers, shared by the results page and ``benchmarks/``.

- 2022/2023: the main track ranks by runtime; "Model Comp." = rank(Params) + rank(FLOPs) and "Overall" =
  rank(Time) + rank(Params) + rank(FLOPs) + rank(Acts) + rank(Mem), every rank ascending and ordinal
  (:func:`track_ranks`, with the tie rules ``benchmarks/table3.py`` inferred from the published Table 3).
- 2024/2025: Score_X = exp(2 * X / X_baseline) for runtime, FLOPs and params; Score_final =
  0.7 * Score_runtime + 0.15 * Score_FLOPs + 0.15 * Score_params, lower is better (:func:`score_from_ratios`).
  A team over about 355 times slower (or bigger) than the baseline has a Score_X beyond the largest float:
  it is ``inf`` (``math.exp`` raises OverflowError there; this never does), every finite score is the
  formula's, and ``log_final`` -- ln(Score_final), finite -- orders the teams whose score is ``inf``.
- The efficiency frontier of a PSNR-cost plot (:func:`pareto_front`).

No presentation here: numbers in, numbers out. Missing values are NaN and stay NaN (never a made-up rank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

RUNTIME_WEIGHT, FLOPS_WEIGHT, PARAMS_WEIGHT = 0.7, 0.15, 0.15


@dataclass(frozen=True)
class Score:
    """The 2024/2025 score parts (arrays of the ratios' shape; NaN where a ratio is missing)."""

    runtime: np.ndarray
    flops: np.ndarray
    params: np.ndarray
    final: np.ndarray  # inf where a part overflows
    log_final: np.ndarray  # ln(final), finite wherever the ratios are


def component_score(ratio: ArrayLike) -> np.ndarray:
    """Score_X = exp(2 * X / X_baseline), from the ratio X / X_baseline; ``inf`` beyond the largest float."""
    with np.errstate(over="ignore"):
        return np.exp(2.0 * np.asarray(ratio, dtype=float))


def score_from_ratios(runtime_ratio: ArrayLike, flops_ratio: ArrayLike, params_ratio: ArrayLike) -> Score:
    """The NTIRE 2024/2025 score from each entry's ratios to the year's baseline (the baseline scores e^2)."""
    ratios = np.broadcast_arrays(*(np.asarray(r, dtype=float) for r in (runtime_ratio, flops_ratio, params_ratio)))
    runtime, flops, params = (component_score(r) for r in ratios)
    with np.errstate(over="ignore", invalid="ignore"):
        final = RUNTIME_WEIGHT * runtime + FLOPS_WEIGHT * flops + PARAMS_WEIGHT * params
        # ln(sum of w * exp(2r)), term by term: finite where the sum overflows (NaN stays NaN)
        weights = (RUNTIME_WEIGHT, FLOPS_WEIGHT, PARAMS_WEIGHT)
        log_final = np.logaddexp.reduce([np.log(w) + 2.0 * r for w, r in zip(weights, ratios)], axis=0)
    return Score(runtime=runtime, flops=flops, params=params, final=final, log_final=log_final)


def ordinal(*keys: ArrayLike) -> np.ndarray:
    """1-based ordinal ranks (1..N, never shared): ascending by ``keys[0]``, ties by ``keys[1]``, ...

    Give a unique last key (e.g. the position) for a rank that does not depend on the sort's stability.
    NaN sorts last.
    """
    arrays = [np.asarray(k, dtype=float) for k in keys]
    order = np.lexsort(tuple(reversed(arrays)))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def ranks_where(values: ArrayLike, *tie_keys: ArrayLike) -> np.ndarray:
    """Ordinal ranks of the finite ``values`` among themselves (ties by ``tie_keys``); NaN elsewhere."""
    values = np.asarray(values, dtype=float)
    have = np.isfinite(values)
    out = np.full(values.shape, np.nan)
    if have.any():
        out[have] = ordinal(values[have], *(np.asarray(k, dtype=float)[have] for k in tie_keys))
    return out


@dataclass(frozen=True)
class TrackRanks:
    """The 2022/2023 ranks (float arrays, NaN where an entry takes no part)."""

    time: np.ndarray
    params: np.ndarray
    flops: np.ndarray
    acts: np.ndarray
    mem: np.ndarray
    model_comp: np.ndarray  # rank(Params) + rank(FLOPs)
    model_comp_rank: np.ndarray
    overall: np.ndarray  # sum of the five ranks; NaN without GPU memory
    overall_rank: np.ndarray


def track_ranks(time: ArrayLike, params: ArrayLike, flops: ArrayLike, acts: ArrayLike, mem: ArrayLike,
                on_gpu: ArrayLike | None = None) -> TrackRanks:
    """The NTIRE 2022/2023 ranks of entries that all have a runtime, params, FLOPs and activations.

    Ties in Params/FLOPs/Acts/Mem and in Model Comp. go to the better runtime rank; ties in Overall to the
    lower Model Comp. score, then the better runtime rank (the rules ``benchmarks/table3.py`` inferred from
    the published Table 3; a runtime tie keeps the given order). An entry without memory (NaN: not
    measured on a GPU) takes part in no memory rank and gets no Overall. A runtime not measured on a GPU
    (``on_gpu`` False) gets no runtime rank and no Overall: the GPU runtimes are ranked as if it were not
    there, and it comes after them only where a tie-break needs an order.
    """
    time = np.asarray(time, dtype=float)
    required = {"runtime": time, "params": params, "FLOPs": flops, "activations": acts}
    for name, values in required.items():
        if not np.isfinite(np.asarray(values, dtype=float)).all():
            raise ValueError(f"track_ranks: every entry needs a finite {name}")
    gpu = np.ones(len(time), dtype=bool) if on_gpu is None else np.asarray(on_gpu, dtype=bool)
    order = ordinal((~gpu).astype(float), time, np.arange(len(time))).astype(float)  # every entry: for tie-breaks
    time_rank = np.where(gpu, order, np.nan)
    params_rank, flops_rank, acts_rank = (ordinal(v, order).astype(float) for v in (params, flops, acts))
    mem_rank = ranks_where(mem, order)
    model_comp = params_rank + flops_rank
    overall = time_rank + params_rank + flops_rank + acts_rank + mem_rank  # NaN without memory or a GPU runtime
    return TrackRanks(time=time_rank, params=params_rank, flops=flops_rank, acts=acts_rank, mem=mem_rank,
                      model_comp=model_comp, model_comp_rank=ordinal(model_comp, order).astype(float),
                      overall=overall, overall_rank=ranks_where(overall, model_comp, order))


def pareto_front(x: Sequence[float] | ArrayLike, y: Sequence[float] | ArrayLike) -> list[int]:
    """Indices of the points no other point beats (lower-or-equal x and higher-or-equal y, one strictly), by x.

    Points with a missing (non-finite) coordinate are on no front.
    """
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    front: list[int] = []
    best = -np.inf
    for i in np.lexsort((-ys, xs)):
        if np.isfinite(xs[i]) and np.isfinite(ys[i]) and ys[i] > best:
            front.append(int(i))
            best = ys[i]
    return front
