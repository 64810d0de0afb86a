"""``check``: every rule a submission must meet, each judged on its own with the reason.

Rules, in table order: the layout (file name, weights name, single file), the scale, the model
builds, the weights load strictly (``weights_only=True``), forward passes at 3x256x256 and at a
DIV2K LR size (339x510: right size, finite), determinism, the data range (the benchmark image at
1.0 and at 255: the declared range must be the one that gives a sane PSNR), params and FLOPs
against the baseline (the year's counter), runtime against the baseline (same device, same run),
and PSNR against the year's bar -- or, where the year's full sets are absent, against the baseline's
PSNR on the folder given. A rule that cannot run (its prerequisite failed) is SKIP, never PASS.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from esrkit import metrics
from esrkit.complexity import FvcoreCounts, OfficialCounts, fvcore_counts, official_counts
from esrkit.datasets import LAYOUTS, ImagePair, Split, demo_split, open_split
from esrkit.errors import KitError
from esrkit.imresize import imresize
from esrkit.registry import Entry, get_entry
from esrkit.runner import SplitResult, SplitRunner, Stopwatch, device_name, pick_device, prepare_model
from esrkit.submission import layout
from esrkit.submission.candidate import Candidate
from esrkit.submission.report import CheckReport, RuleResult, failed, passed, skipped, verdict

CHALLENGE_SCALE = 4
DATA_RANGES = (1.0, 255.0)
DATA_RANGE_CROP = 128  # LR pixels: the data-range probe runs on a centre crop of at most this size
SANE_MARGIN_DB = 1.0  # a data range is sane when its PSNR is at least bicubic's minus this
SAME_PSNR_DB = 0.1  # closer than this at 1.0 and 255: the output scales with the input, both ranges work
PROBE_SHAPES = {"forward 3x256x256": (256, 256), "forward 3x339x510 (DIV2K LR)": (339, 510)}

RULE_SCALE = "scale"
RULE_MODEL = "model"
RULE_WEIGHTS = "weights load (strict)"
RULE_DETERMINISTIC = "deterministic"
RULE_DATA_RANGE = "data range"
RULE_PARAMS = "params"
RULE_FLOPS = "FLOPs"
RULE_RUNTIME = "runtime"


@dataclass(frozen=True)
class YearRules:
    """One challenge year's counting convention and PSNR bars (``OFFICIAL_KITS.md`` section 1)."""

    year: int
    flops_counter: str  # "official" (model_summary hooks, 2022-2023) or "fvcore" (2024-2025)
    layout: str  # the dataset layout the bars are measured on
    bars: Mapping[str, float]  # split -> PSNR bar [dB]
    set_sizes: Mapping[str, int]  # split -> images in the full set the bar is defined on
    sets: str

    def describe(self) -> str:
        bars = " / ".join(f"{b:.2f} dB {s}" for s, b in self.bars.items())
        counter = "official hook counter" if self.flops_counter == "official" else "fvcore"
        return f"NTIRE {self.year} rules: FLOPs by the {counter}; PSNR bar {bars} on {self.sets}"


YEARS: dict[int, YearRules] = {
    2023: YearRules(2023, "official", "ntire2023", {"valid": 29.00}, {"valid": 100}, "DIV2K valid (100 images)"),
    2024: YearRules(2024, "fvcore", "ntire2024", {"valid": 26.90, "test": 26.99}, {"valid": 200, "test": 200},
                    "DIV2K_LSDIR valid / test (200 images each)"),
    2025: YearRules(2025, "fvcore", "ntire2024", {"valid": 26.90, "test": 26.99}, {"valid": 200, "test": 200},
                    "DIV2K_LSDIR valid / test (200 images each)"),
}


@dataclass(frozen=True)
class CheckOptions:
    """What the candidate is judged against, and where."""

    baseline: str = "RFDN"
    baseline_weights: Path | None = None
    year: int = 2023
    data_dir: Path | None = None
    layout: str = "auto"
    device: str = "auto"
    runs: int = 3


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else '(no message)'}"


def probe_input(height: int, width: int, data_range: float, device: torch.device) -> torch.Tensor:
    """A seeded random 1x3xHxW image in [0, data_range]."""
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    return (x * data_range).to(device)


def check_forward(
    rule: str, model: nn.Module, x: torch.Tensor, scale: int
) -> tuple[RuleResult, torch.Tensor | None]:
    """One forward pass: it must return a 1x3x(scale*H)x(scale*W) tensor with no NaN or Inf."""
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # user code: whatever it raises is the reason
        return failed(rule, f"the forward pass raised {_first_line(exc)}"), None
    if not isinstance(out, torch.Tensor):
        return failed(rule, f"the forward pass returned {type(out).__name__}, not a tensor"), None
    expected = (1, 3, scale * x.shape[2], scale * x.shape[3])
    if tuple(out.shape) != expected:
        return failed(
            rule, f"output {tuple(out.shape)} for input {tuple(x.shape)}; x{scale} needs {expected}"
        ), None
    bad = ~torch.isfinite(out)
    if bad.any():
        nan = int(torch.isnan(out).sum())
        return failed(
            rule, f"output has {nan} NaN and {int(bad.sum()) - nan} Inf values of {out.numel()} "
                  f"for input {tuple(x.shape)}"
        ), None
    return passed(rule, f"{tuple(x.shape)} -> {tuple(out.shape)}, all finite"), out


def _centre_crop(hr: np.ndarray, lr: np.ndarray, scale: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = min(lr.shape[0], size), min(lr.shape[1], size)
    top, left = (lr.shape[0] - h) // 2, (lr.shape[1] - w) // 2
    lr = lr[top : top + h, left : left + w]
    hr = hr[top * scale : (top + h) * scale, left * scale : (left + w) * scale]
    return hr, lr


def check_data_range(
    model: nn.Module, pair: ImagePair, scale: int, declared: float | None, device: torch.device
) -> tuple[RuleResult, float]:
    """Run a benchmark image at 1.0 and at 255; return the verdict and the range to use from here on."""
    hr, lr = _centre_crop(*pair.load(scale), scale, DATA_RANGE_CROP)
    bicubic = metrics.psnr(imresize(lr, scale), hr, crop_border=scale)
    scores: dict[float, float] = {}
    for data_range in DATA_RANGES:
        try:
            with torch.no_grad():
                sr = metrics.tensor_to_uint8(model(metrics.uint8_to_tensor(lr, data_range).to(device)), data_range)
            scores[data_range] = metrics.psnr(sr, hr, crop_border=scale)
        except Exception as exc:  # user code on a real image: report what it raised
            return failed(RULE_DATA_RANGE, f"running {pair.name} (LR crop {lr.shape[1]}x{lr.shape[0]}) at "
                                           f"{data_range:g} raised {_first_line(exc)}"), declared or 1.0
    detail = (f"PSNR {scores[1.0]:.2f} dB at 1.0, {scores[255.0]:.2f} dB at 255, bicubic {bicubic:.2f} dB "
              f"on {pair.name} (LR crop {lr.shape[1]}x{lr.shape[0]})")
    best = max(scores, key=scores.__getitem__)
    sane = [r for r in DATA_RANGES if scores[r] >= bicubic - SANE_MARGIN_DB]
    either = len(sane) == 2 and abs(scores[1.0] - scores[255.0]) < SAME_PSNR_DB
    if not sane:
        return failed(RULE_DATA_RANGE, f"neither range gives a sane PSNR ({detail}): untrained weights or a broken "
                                       f"model?"), declared if declared is not None else best
    if declared is None:
        found = "either 1.0 or 255" if either else f"{best:g}"
        return failed(RULE_DATA_RANGE, f"not declared; the outputs fit {found} ({detail}): pass --data_range "
                                       f"{best:g}"), best
    if either:
        return passed(RULE_DATA_RANGE, f"{declared:g} declared; the output scales with the input, so both "
                                       f"work ({detail})"), declared
    if best == declared:
        return passed(RULE_DATA_RANGE, f"{declared:g} confirmed ({detail}; {declared:g} is the sane one)"), declared
    return failed(RULE_DATA_RANGE, f"declared {declared:g} but the outputs fit {best:g} ({detail}): "
                                   f"set data_range={best:g}"), declared


@dataclass(frozen=True)
class Counts:
    """Both official counters for one model; ``fvcore`` is the error text when fvcore could not trace it."""

    official: OfficialCounts
    fvcore: FvcoreCounts | str

    def flops(self, counter: str) -> int | None:
        if counter == "official":
            return self.official.flops
        return None if isinstance(self.fvcore, str) else self.fvcore.macs

    def describe_flops(self) -> str:
        fv = self.fvcore if isinstance(self.fvcore, str) else f"{self.fvcore.macs / 1e9:.2f} G"
        return f"{self.official.flops / 1e9:.2f} G official / {fv} fvcore"


def count(model: nn.Module) -> Counts:
    """Params, FLOPs (both counters, MACs on 3x256x256), activations and #conv."""
    official = official_counts(model)
    try:
        fv: FvcoreCounts | str = fvcore_counts(model)
    except KitError:
        raise
    except Exception as exc:  # fvcore's tracer fails on some user code: that is the finding, not a crash
        fv = f"fvcore could not trace the model ({_first_line(exc)})"
    return Counts(official, fv)


def time_interleaved(
    forwards: Sequence[tuple[Callable[[torch.Tensor], torch.Tensor], float]],
    split: Split,
    scale: int,
    device: torch.device,
    runs: int,
) -> list[list[float]]:
    """Per model, per image, the median of ``runs`` timed forwards (after one warm-up each).

    The models alternate on every image, so a slowdown of the machine hits them alike.
    """
    stopwatch = Stopwatch(device)
    medians: list[list[float]] = [[] for _ in forwards]
    for pair in split.pairs:
        lr = pair.load_lr(scale)
        inputs = [metrics.uint8_to_tensor(lr, data_range).to(device) for _, data_range in forwards]
        samples: list[list[float]] = [[] for _ in forwards]
        for repeat in range(runs + 1):
            for i, ((forward, _), x) in enumerate(zip(forwards, inputs)):
                with torch.no_grad():
                    _, ms = stopwatch.time(lambda: forward(x))
                if repeat:
                    samples[i].append(ms)
        for i, s in enumerate(samples):
            medians[i].append(statistics.median(s))
    return medians


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def year_bar(rules: YearRules, split: Split) -> float | None:
    """The year's PSNR bar for ``split``, or None where it does not apply: another layout, a split without
    a bar, or not the full set (a bar on the full set says nothing about a subset)."""
    bar = rules.bars.get(split.name)
    if bar is None or split.layout != rules.layout or len(split) != rules.set_sizes[split.name]:
        return None
    return bar


def resolve_splits(options: CheckOptions, rules: YearRules, scale: int) -> list[Split]:
    """The valid split (the demo photos without ``--data_dir``), plus test where the year has a test bar and
    the folder has that split."""
    if options.data_dir is None:
        return [demo_split()]
    splits = [open_split(options.data_dir, "valid", options.layout, scale)]
    layout_name = splits[0].layout
    spec = LAYOUTS.get(layout_name, {}).get("test")
    if "test" in rules.bars and layout_name == rules.layout and spec and (splits[0].root / spec.hr_dir).is_dir():
        splits.append(open_split(options.data_dir, "test", layout_name, scale))
    return splits


class SubmissionCheck:
    """Runs every rule on one candidate (see the module docstring); :meth:`run` returns the report."""

    def __init__(self, candidate: Candidate, options: CheckOptions) -> None:
        if options.year not in YEARS:
            raise KitError(f"unknown --year {options.year}; choose one of {', '.join(map(str, YEARS))}")
        self.candidate = candidate
        self.options = options
        self.rules = YEARS[options.year]
        self.device = pick_device(options.device)
        # Everything that can be a usage error is resolved before any rule runs.
        self.baseline_entry: Entry = get_entry(options.baseline)
        self.baseline_model, self.baseline_weights = self.baseline_entry.load(options.baseline_weights)
        self.splits = resolve_splits(options, self.rules, candidate.scale)
        self.report = CheckReport()
        self.model: nn.Module | None = None
        self.data_range: float = candidate.data_range if candidate.data_range is not None else 1.0

    # -- table helpers -------------------------------------------------------------------------

    def _add(self, result: RuleResult) -> RuleResult:
        self.report.results.append(result)
        return result

    def _skip_all(self, rules: Sequence[str], reason: str) -> None:
        for rule in rules:
            self._add(skipped(rule, reason))

    def _quality_rules(self) -> list[str]:
        return [f"PSNR {split.name}" for split in self.splits]

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> CheckReport:
        """Every rule in table order; the report passes only when every rule passed."""
        c = self.candidate
        torch.backends.cudnn.benchmark = False
        self._write_header()
        self._add(layout.check_model_file_name(c.source_file))
        self._add(layout.check_weights_name(c.weights, c.source_file))
        self._add(layout.check_imports(c.source_file))
        self._add(verdict(RULE_SCALE, c.scale == CHALLENGE_SCALE,
                          f"x{c.scale}" + ("" if c.scale == CHALLENGE_SCALE else f"; the challenge is x{CHALLENGE_SCALE}")))
        later = [*PROBE_SHAPES, RULE_DETERMINISTIC, RULE_DATA_RANGE, RULE_PARAMS, RULE_FLOPS, RULE_RUNTIME,
                 *self._quality_rules()]
        if c.build is None:
            self._add(failed(RULE_MODEL, c.problem or "no model"))
            self._skip_all([RULE_WEIGHTS, *later], "the file gave no model")
            return self.report
        self._add(passed(RULE_MODEL, c.described_as))
        if not self._load_weights():
            self._skip_all(later, "the weights did not load")
            return self.report
        if not self._forward_rules():
            self._skip_all([RULE_PARAMS, RULE_FLOPS, RULE_RUNTIME, *self._quality_rules()],
                           "the model's output is not a valid x4 image")
            return self.report
        self._efficiency_and_quality_rules()
        return self.report

    def _write_header(self) -> None:
        c = self.candidate
        declared = "not declared" if c.data_range is None else f"{c.data_range:g}"
        split = self.splits[0]
        sizes = ", ".join(f"{s.name} {len(s)} images" for s in self.splits)
        self.report.header = [
            f"Submission check of {c.described_as} ({c.source_file}); weights {c.weights or '-'}; "
            f"x{c.scale}, data range {declared}",
            f"Baseline {self.baseline_entry.name} (weights {self.baseline_weights}); {self.rules.describe()}",
            f"Device {device_name(self.device)}; data {split.root} ({split.layout} layout: {sizes})",
        ]

    def _load_weights(self) -> bool:
        c = self.candidate
        try:
            model = c.load_model()
        except KitError as exc:
            self._add(failed(RULE_WEIGHTS, str(exc)))
            return False
        except Exception as exc:  # building the user's model can raise anything
            self._add(failed(RULE_WEIGHTS, f"building or loading the model raised {_first_line(exc)}"))
            return False
        self.model = prepare_model(model, self.device)
        keys = len(model.state_dict())
        self._add(passed(RULE_WEIGHTS, f"{keys} tensor{'' if keys == 1 else 's'}, strict=True, weights_only=True"))
        return True

    def _forward_rules(self) -> bool:
        """Forward passes, data range and determinism; True when the output is a valid image."""
        assert self.model is not None
        c = self.candidate
        outputs: list[torch.Tensor] = []
        results = []
        for rule, (h, w) in PROBE_SHAPES.items():
            result, out = check_forward(rule, self.model, probe_input(h, w, self.data_range, self.device), c.scale)
            results.append(self._add(result))
            if out is not None:
                outputs.append(out)
        ok = all(r.passed for r in results)
        if not ok:
            self._skip_all([RULE_DETERMINISTIC, RULE_DATA_RANGE], "a forward pass failed")
            return False
        self._add(self._determinism(outputs[0]))
        result, self.data_range = check_data_range(self.model, self.splits[0].pairs[0], c.scale, c.data_range,
                                                   self.device)
        self._add(result)
        return True

    def _determinism(self, first: torch.Tensor) -> RuleResult:
        assert self.model is not None
        h, w = PROBE_SHAPES["forward 3x256x256"]
        with torch.no_grad():
            second = self.model(probe_input(h, w, self.data_range, self.device))
        if torch.equal(first, second):
            return passed(RULE_DETERMINISTIC, "two runs on the same input are bitwise identical")
        diff = float((first - second).abs().max())
        same_uint8 = np.array_equal(metrics.tensor_to_uint8(first, self.data_range),
                                    metrics.tensor_to_uint8(second, self.data_range))
        return verdict(RULE_DETERMINISTIC, same_uint8,
                       f"two runs differ by up to {diff:.3g}; the saved uint8 images are "
                       f"{'identical' if same_uint8 else 'different: fix the randomness (dropout in eval? random ops?)'}")

    def _efficiency_and_quality_rules(self) -> None:
        assert self.model is not None
        c, base = self.candidate, self.baseline_entry
        self.report.results += complexity_rules(self.rules, count(self.model), count(self.baseline_model), base.name)

        ours_runner = SplitRunner(self.model, scale=c.scale, data_range=self.data_range, device=self.device,
                                  tile=c.tile, tile_overlap=c.tile_overlap)
        base_runner = SplitRunner(prepare_model(self.baseline_model, self.device), scale=base.scale,
                                  data_range=base.data_range, device=self.device, tile=base.tile,
                                  tile_overlap=base.tile_overlap)
        valid = self.splits[0]
        try:
            ours = {split.name: ours_runner.run(split) for split in self.splits}
        except Exception as exc:  # the user's model on real images (sizes, memory): the reason, not a traceback
            reason = f"running the model on the {valid.root} images raised {_first_line(exc)}"
            self.report.results += [failed(rule, reason) for rule in (RULE_RUNTIME, *self._quality_rules())]
            return
        theirs = {valid.name: base_runner.run(valid)}
        self._add(self._runtime_rule(ours_runner, base_runner, ours[valid.name], theirs[valid.name]))
        for split in self.splits:
            bar = year_bar(self.rules, split)
            if bar is None and split.name not in theirs:
                theirs[split.name] = base_runner.run(split)
            self._add(self._psnr_rule(split, ours[split.name], bar, theirs.get(split.name)))

    def _runtime_rule(self, ours: SplitRunner, base: SplitRunner, our_valid: SplitResult,
                      base_valid: SplitResult) -> RuleResult:
        split = self.splits[0]
        runs = max(self.options.runs, 1)
        mine, theirs = time_interleaved(
            [(ours.forward, self.data_range), (base.forward, self.baseline_entry.data_range)],
            split, self.candidate.scale, self.device, runs,
        )
        ratio = sum(mine) / sum(theirs)
        cold = f"{_mean(our_valid.runtime_ms):.2f} vs {_mean(base_valid.runtime_ms):.2f} ms"
        return verdict(
            RULE_RUNTIME, ratio <= 1.0,
            f"{ratio:.2f}x the baseline ({_mean(mine):.2f} vs {self.baseline_entry.name} {_mean(theirs):.2f} ms "
            f"per image: median of {runs} interleaved warm runs, {len(split)} {split.name} images; challenge "
            f"protocol mean {cold}); must be <= 1.00x",
        )

    def _psnr_rule(self, split: Split, ours: SplitResult, bar: float | None, base: SplitResult | None) -> RuleResult:
        """Against the year's bar where it applies, else against the baseline on the same images."""
        rule = f"PSNR {split.name}"
        value = _mean(ours.psnr)
        if bar is not None:
            return verdict(rule, value >= bar, f"{value:.2f} dB vs the NTIRE {self.rules.year} bar {bar:.2f} dB "
                                               f"({len(split)} images; must be >=)")
        assert base is not None
        base_value = _mean(base.psnr)
        why = (f"{split.layout} layout" if split.layout != self.rules.layout
               else f"{len(split)} of the {self.rules.set_sizes.get(split.name, '?')} images")
        return verdict(
            rule, value >= base_value,
            f"{value:.2f} dB vs {self.baseline_entry.name} {base_value:.2f} dB on the same {len(split)} images "
            f"(must be >=; the NTIRE {self.rules.year} bar is for {self.rules.sets}, here {why})",
        )


def complexity_rules(rules: YearRules, ours: Counts, theirs: Counts, baseline: str) -> list[RuleResult]:
    """Params and the year's FLOPs, each at most the baseline's."""
    p, bp = ours.official.params, theirs.official.params
    params = verdict(RULE_PARAMS, p <= bp, f"{p:,} vs {baseline} {bp:,} ({p / bp:.2f}x; must be <= 1.00x)")
    f, bf = ours.flops(rules.flops_counter), theirs.flops(rules.flops_counter)
    both = f"ours {ours.describe_flops()}, {baseline} {theirs.describe_flops()}"
    if f is None or bf is None:
        return [params, failed(RULE_FLOPS, f"the {rules.year} counter (fvcore) could not count: {both}")]
    label = f"{rules.year} counter ({'official hooks' if rules.flops_counter == 'official' else 'fvcore'})"
    flops = verdict(RULE_FLOPS, f <= bf, f"{f / 1e9:.2f} G vs {bf / 1e9:.2f} G by the {label}, MACs on 3x256x256 "
                                         f"({f / bf:.2f}x; must be <= 1.00x); {both}")
    return [params, flops]


def run_check(candidate: Candidate, options: CheckOptions) -> CheckReport:
    """Check ``candidate`` against ``options``; the report's ``passed`` is True only if every rule passed."""
    return SubmissionCheck(candidate, options).run()
