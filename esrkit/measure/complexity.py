"""Model complexity as the official NTIRE kits count it, on a 3x256x256 LR input.

``official_counts`` re-implements the convention of the kits' ``utils/model_summary.py`` (the
hook counter behind the 2022-2023 FLOPs column and every year's activations and #conv), written
from its documented rules (``OFFICIAL_KITS.md`` section 2), quirks included:

- hooks see ``nn.Module`` instances only; functional calls and tensor operators count nothing;
- conv FLOPs are MACs without bias: prod(kernel) * C_in * C_out / groups * H_out * W_out;
  a transposed conv uses the *output* size (the kit's overcount by stride^2);
- nn.ReLU/PReLU/ELU/LeakyReLU/ReLU6 count their output elements; GELU, SiLU, sigmoid, pooling,
  interpolation and pixel shuffle count 0; BatchNorm2d counts elements x (2 if affine);
  nn.Linear counts batch * in.shape[1] * out.shape[1] (the kit's formula, wrong for 3-D input);
- activations = sum of output elements of every nn.Conv2d / nn.ConvTranspose2d call;
  #conv = number of such calls (a module called twice counts twice).

Each count runs on a fresh copy of the model, because hooks of different counters interfere.

Beside it, for comparison (optional dependencies, imported only when called):
``fvcore_counts`` (the 2024-2025 FLOPs column: conv MACs + 4 per output element of a bilinear
upsample, other elementwise ops skipped and reported) and ``ptflops_counts`` (pytorch backend:
adds bias, activation modules, pooling and interpolation outputs). All three report MACs.

:func:`count` is what every command calls: all counters with one error policy (the official
counter must work; fvcore or ptflops failing is recorded, never a crash), counted on the seeded
probe and once more on a second one, so a network whose counts depend on its input (a mixture of
experts routing per input) is reported as such rather than with one number that looks exact.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from math import prod

import torch
from torch import nn

from esrkit.errors import KitError, first_line
from esrkit.measure import probe

INPUT_SHAPE = probe.COMPLEXITY_SHAPE
RELU_FAMILY = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
CONVS = (nn.Conv2d, nn.ConvTranspose2d)


@dataclass(frozen=True)
class OfficialCounts:
    """Counts under the official convention. ``flops`` are MACs, as the kits (and Table 3) use."""

    params: int
    flops: int
    activations: int
    num_conv: int


def count_params(model: nn.Module) -> int:
    """All parameters, no buffers (``sum(p.numel() for p in model.parameters())``)."""
    return sum(p.numel() for p in model.parameters())


def _layer_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, CONVS):
        # The kit multiplies by the output spatial size for transposed convs too.
        k = prod(module.kernel_size)
        return k * module.in_channels * module.out_channels // module.groups * output.numel() // module.out_channels
    if isinstance(module, RELU_FAMILY):
        return output.numel()
    if isinstance(module, nn.BatchNorm2d):
        return inputs[0].numel() * (2 if module.affine else 1)
    if isinstance(module, nn.Linear):
        return inputs[0].shape[0] * inputs[0].shape[1] * output.shape[1]
    return 0


def official_counts(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE, seed: int = probe.SEED) -> OfficialCounts:
    """Params, FLOPs (MACs), activations and #conv of ``model`` under the official convention."""
    model = copy.deepcopy(model).eval().cpu()
    totals = {"flops": 0, "acts": 0, "convs": 0}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        totals["flops"] += _layer_flops(module, inputs, output)
        if isinstance(module, CONVS):
            totals["acts"] += output.numel()
            totals["convs"] += 1

    counted = CONVS + RELU_FAMILY + (nn.BatchNorm2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad():
            model(_random_input(input_shape, seed))
    finally:
        for h in handles:
            h.remove()
    return OfficialCounts(count_params(model), totals["flops"], totals["acts"], totals["convs"])


# --- Third-party counters, for comparison with the official one --------------------------------


@dataclass(frozen=True)
class FvcoreCounts:
    """fvcore's ``FlopCountAnalysis`` (the 2024-2025 kits' FLOPs column), in MACs.

    fvcore counts one fused multiply-add as one "flop", so ``macs`` is what the kits report as
    FLOPs. ``macs_by_operator`` maps fvcore's operator names (``conv``, ``upsample_bilinear2d``,
    ...) to their MACs; ``unsupported_ops`` maps each aten operator fvcore skipped (counted as 0)
    to the number of times it was called, e.g. ``{"aten::sigmoid": 4}``.
    """

    macs: int
    macs_by_operator: dict[str, int]
    unsupported_ops: dict[str, int]


@dataclass(frozen=True)
class PtflopsCounts:
    """ptflops ``get_model_complexity_info`` with the pytorch backend: MACs (bias, activations,
    pooling and interpolation included, by its own rules) and its parameter count."""

    macs: int
    params: int


def _fresh_copy(model: nn.Module, trainable: bool) -> nn.Module:
    """A deep copy in eval mode on the CPU with ``requires_grad`` set to ``trainable`` on every parameter."""
    model = copy.deepcopy(model).eval().cpu()
    for p in model.parameters():
        p.requires_grad_(trainable)
    return model


def _random_input(input_shape: tuple[int, ...], seed: int = probe.SEED) -> torch.Tensor:
    """``torch.rand(1, *input_shape)`` as the kits draw it, seeded so a run is reproducible."""
    return probe.seeded_rand(tuple(input_shape), seed)


def fvcore_counts(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE, seed: int = probe.SEED) -> FvcoreCounts:
    """fvcore's total, per-operator MACs and skipped operators, on ``torch.rand(1, *input_shape)``.

    fvcore's own warnings (unsupported operators, uncalled modules, tracer warnings) are silenced;
    what it skipped is returned in :attr:`FvcoreCounts.unsupported_ops` instead.
    """
    try:
        with warnings.catch_warnings():
            # fvcore.nn applies torch.jit.script at import, which torch >= 2.10 flags as deprecated.
            warnings.simplefilter("ignore", DeprecationWarning)
            from fvcore.nn import FlopCountAnalysis
    except ImportError:
        raise KitError(
            "fvcore is not installed; it is an optional dependency of the complexity comparison. "
            "Install the kits' version: pip install fvcore==0.1.5.post20221221"
        ) from None
    # Gradients off, as the kits' select_model leaves the model.
    analysis = FlopCountAnalysis(_fresh_copy(model, trainable=False), _random_input(input_shape, seed))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return FvcoreCounts(
        macs=int(analysis.total()),
        macs_by_operator={op: int(n) for op, n in analysis.by_operator().items()},
        unsupported_ops={op: int(n) for op, n in analysis.unsupported_ops().items()},
    )


def ptflops_counts(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE) -> PtflopsCounts:
    """ptflops' MACs and params with ``backend='pytorch'`` on a ``(1, *input_shape)`` input.

    ptflops draws its own input (an uninitialised ``new_empty`` batch); ``model`` is left untouched.
    """
    try:
        from ptflops import get_model_complexity_info
    except ImportError:
        raise KitError(
            "ptflops is not installed; it is an optional dependency of the complexity comparison. "
            "Install it: pip install ptflops==0.7.5"
        ) from None
    # ptflops counts only parameters that require grad, so its copy keeps them all trainable.
    macs, params = get_model_complexity_info(
        _fresh_copy(model, trainable=True),
        tuple(input_shape),
        as_strings=False,
        print_per_layer_stat=False,
        verbose=False,
        backend="pytorch",
    )
    if macs is None or params is None:
        raise KitError(f"ptflops could not count {type(model).__name__} (its forward failed on a {input_shape} input)")
    return PtflopsCounts(macs=int(macs), params=int(params))


# --- every counter at once, as the commands report them ----------------------------------------

COUNTERS = ("official", "fvcore", "ptflops")


@dataclass(frozen=True)
class Complexity:
    """Every count on the 3x256x256 probe. FLOPs are MACs under each counter's rules; a counter that
    could not count is None with the reason in ``errors``.

    ``varies`` maps each count that changed on the second probe to (first probe, second probe): the
    network's counts depend on its input, and the figures above are those of the first probe.
    """

    params: int
    flops_official: int  # the kits' hook counter (2022-2023; Table 3)
    activations: int
    num_conv: int
    flops_fvcore: int | None  # fvcore FlopCountAnalysis (2024-2025)
    flops_ptflops: int | None  # ptflops, pytorch backend (bias and activations included)
    fvcore_unsupported: dict[str, int]
    errors: dict[str, str]
    varies: dict[str, tuple[int, int]]

    def flops(self, counter: str) -> int | None:
        """The FLOPs (MACs) under ``counter``: "official" (hooks) or "fvcore"."""
        return {"official": self.flops_official, "fvcore": self.flops_fvcore, "ptflops": self.flops_ptflops}[counter]

    def probe_note(self) -> str:
        """One sentence on the probe, and on input dependence where it was found."""
        text = f"counted on {probe.describe()}"
        if self.varies:
            changes = "; ".join(f"{k} {a:,} vs {b:,}" for k, (a, b) in self.varies.items())
            text += (f"; INPUT-DEPENDENT: on a second probe (seed {probe.SECOND_SEED}) {changes} -- the official "
                     f"kits' unseeded probes give a different number on every run for this network")
        return text


def _counts_on(model: nn.Module, seed: int, counters: tuple[str, ...]) -> tuple[dict[str, int], dict[str, str], dict[str, int]]:
    values: dict[str, int] = {}
    errors: dict[str, str] = {}
    unsupported: dict[str, int] = {}
    try:
        o = official_counts(model, seed=seed)
    except Exception as exc:  # user code on the probe: the reason, in one line
        raise KitError(f"{type(model).__name__} fails on the 3x256x256 complexity probe ({first_line(exc)})") from None
    values.update(params=o.params, flops_official=o.flops, activations=o.activations, num_conv=o.num_conv)
    if "fvcore" in counters:
        try:
            fv = fvcore_counts(model, seed=seed)
            values["flops_fvcore"], unsupported = fv.macs, fv.unsupported_ops
        except KitError as exc:
            errors["fvcore"] = str(exc)
        except Exception as exc:  # fvcore's tracer fails on some user code: that is the finding, not a crash
            errors["fvcore"] = f"fvcore could not trace the model ({first_line(exc)})"
    if "ptflops" in counters and seed == probe.SEED:  # ptflops draws its own input
        try:
            values["flops_ptflops"] = ptflops_counts(model).macs
        except KitError as exc:
            errors["ptflops"] = str(exc)
        except Exception as exc:
            errors["ptflops"] = f"ptflops could not count the model ({first_line(exc)})"
    return values, errors, unsupported


def count(model: nn.Module, counters: tuple[str, ...] = COUNTERS, second_probe: bool = True) -> Complexity:
    """Every count of ``model`` (as deployed: weights loaded, post-load step applied) on the seeded probe.

    With ``second_probe`` the official counter and fvcore run again on another seeded probe, and the
    counts that change are reported in :attr:`Complexity.varies`.
    """
    unknown = set(counters) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown counters {sorted(unknown)}; known: {COUNTERS}")
    values, errors, unsupported = _counts_on(model, probe.SEED, counters)
    varies: dict[str, tuple[int, int]] = {}
    if second_probe:
        again, _, _ = _counts_on(model, probe.SECOND_SEED, tuple(c for c in counters if c != "ptflops"))
        varies = {k: (values[k], v) for k, v in again.items() if k in values and values[k] != v}
    return Complexity(
        params=values["params"], flops_official=values["flops_official"], activations=values["activations"],
        num_conv=values["num_conv"], flops_fvcore=values.get("flops_fvcore"), flops_ptflops=values.get("flops_ptflops"),
        fvcore_unsupported=unsupported, errors=errors, varies=varies,
    )
