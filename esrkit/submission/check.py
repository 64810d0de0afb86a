"""``check``: every rule a submission must meet, each judged on its own with the reason.

Rules, in table order: the layout (file name, weights name, single file), the scale, the model
builds, the weights load (as the spec says: strict unless told otherwise, ``weights_only=True``),
forward passes at 3x256x256 and at a DIV2K LR size (339x510: the right size), determinism, the
data range (the benchmark image at 1.0 and at 255: the declared range must be the one that gives a
sane PSNR), params and FLOPs against the baseline (the year's counter), runtime against the
baseline (same device, same run), and PSNR against the year's bar -- or, where the year's full sets
are absent, against the baseline's PSNR on the folder given. A rule that cannot run (its
prerequisite failed) is SKIP, never PASS.

What the organisers judged is what is judged: the forward probes are random noise, on which some
networks give NaN while they are fine on images; that is reported (with the counts, which do not
depend on it), and only non-finite output on the real images fails.
"""

from __future__ import annotations

import inspect
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from esrkit import metrics
from esrkit.challenge import HOOKS, Year, year_rules
from esrkit.datasets import LAYOUTS, ImagePair, Split, demo_split, open_splits
from esrkit.device import device_name, pick_device, prepare_model
from esrkit.entry import Entry, Loaded
from esrkit.errors import KitError, NonFiniteOutput, first_line
from esrkit.evaluation import Evaluator, SplitRecord
from esrkit.imageio import quantise, tensor_to_uint8, uint8_to_tensor
from esrkit.imresize import imresize
from esrkit.measure import timing
from esrkit.measure.timing import mean
from esrkit.api import count
from esrkit.measure.complexity import Complexity
from esrkit.measure.probe import probe_input
from esrkit.options import option
from esrkit.progress import QUIET, Progress
from esrkit.registry import get_entry
from esrkit.spec import SpecConflict, TeamSpec, resolve
from esrkit.submission import layout
from esrkit.submission.plausibility import SANE_MARGIN_DB
from esrkit.submission.report import CheckReport, RuleResult, failed, passed, skipped, verdict

CHALLENGE_SCALE = 4
DATA_RANGES = (1.0, 255.0)
DATA_RANGE_CROP = 128  # LR pixels: the data-range probe runs on a centre crop of at most this size
SAME_PSNR_DB = 0.1  # closer than this at 1.0 and 255: the output scales with the input, both ranges work
PROBE_SHAPES = {"forward 3x256x256": (256, 256), "forward 3x339x510 (DIV2K LR)": (339, 510)}

RULE_SCALE = "scale"
RULE_MODEL = "model"
RULE_WEIGHTS = "weights load"
RULE_DETERMINISTIC = "deterministic"
RULE_DATA_RANGE = "data range"
RULE_PARAMS = "params"
RULE_FLOPS = "FLOPs"
RULE_RUNTIME = "runtime"


@dataclass(frozen=True)
class CheckOptions:
    """What the submission is judged against, and where. ``baseline`` None: the year's baseline."""

    baseline: str | None = None
    baseline_weights: Path | None = None
    year: int = 2023
    data_dir: Path | None = None
    layout: str = "auto"
    device: str = "auto"
    runs: int = 3


@dataclass(frozen=True)
class Submission:
    """What ``check`` judges: the model file and weights, and the entry they give -- or why they give none."""

    source: Path
    weights: Path | None
    entry: Entry | None
    problem: str | None = None

    @classmethod
    def from_spec(cls, spec: TeamSpec) -> "Submission":
        """A team's file or a registered entry; a spec that gives no model still gives a submission to judge.

        A weights file that is named but does not exist is a usage error (a mistyped path), not a rule that failed:
        judging the submission without the weights meant for it would judge something else."""
        if spec.weights is not None and not Path(spec.weights).is_file():
            raise KitError(f"weights file not found: {spec.weights}; check {option('weights')}")
        try:
            entry = resolve(spec, require_data_range=False)
        except SpecConflict:  # the flags contradict the file: a usage error, not a rule that failed
            raise
        except KitError as exc:
            if spec.model_file is None:
                raise
            return cls(spec.model_file, spec.weights, None, str(exc))
        source = entry.source or Path(inspect.getsourcefile(entry.arch) or "?")
        return cls(source, entry.default_weights_path(), entry)

    def describe(self) -> str:
        if self.entry is None:
            return f"model file {self.source.name}"
        where = "registered entry" if self.entry.source is None else f"from {self.source.name}"
        return f"{self.entry.call_text()} {where}"


@dataclass(frozen=True)
class Probe:
    """One forward pass on a random probe: its verdict on the shape, and how many values were not finite."""

    result: RuleResult
    output: torch.Tensor | None
    non_finite: int = 0


def check_forward(rule: str, model: nn.Module, x: torch.Tensor, scale: int) -> Probe:
    """One forward pass: it must return a 1x3x(scale*H)x(scale*W) tensor (finiteness is counted, judged later)."""
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # user code: whatever it raises is the reason
        return Probe(failed(rule, f"the forward pass raised {first_line(exc)}"), None)
    if not isinstance(out, torch.Tensor):
        return Probe(failed(rule, f"the forward pass returned {type(out).__name__}, not a tensor"), None)
    expected = (1, 3, scale * x.shape[2], scale * x.shape[3])
    if tuple(out.shape) != expected:
        return Probe(failed(rule, f"output {tuple(out.shape)} for input {tuple(x.shape)}; x{scale} needs {expected}"), None)
    bad = ~torch.isfinite(out)
    n_bad = int(bad.sum())
    if n_bad:
        nan = int(torch.isnan(out).sum())
        detail = f"{nan} NaN and {n_bad - nan} Inf values of {out.numel()} on this random probe"
        return Probe(failed(rule, f"{tuple(x.shape)} -> {tuple(out.shape)}; {detail}"), out, n_bad)
    return Probe(passed(rule, f"{tuple(x.shape)} -> {tuple(out.shape)}, all finite"), out)


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
                sr = tensor_to_uint8(model(uint8_to_tensor(lr, data_range).to(device)), data_range)
            scores[data_range] = metrics.psnr(sr, hr, crop_border=scale)
        except NonFiniteOutput:  # no PSNR of it: this range cannot be the sane one
            scores[data_range] = -math.inf
        except Exception as exc:  # user code on a real image: report what it raised
            return failed(RULE_DATA_RANGE, f"running {pair.name} (LR crop {lr.shape[1]}x{lr.shape[0]}) at "
                                           f"{data_range:g} raised {first_line(exc)}"), declared or 1.0
    shown = {r: "NaN/Inf output" if math.isinf(v) else f"PSNR {v:.2f} dB" for r, v in scores.items()}
    detail = (f"{shown[1.0]} at 1.0, {shown[255.0]} at 255, bicubic {bicubic:.2f} dB "
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


def year_bar(rules: Year, split: Split) -> float | None:
    """The year's PSNR bar for ``split``, or None where it does not apply: another layout, a split without
    a bar, or not the full set (a bar on the full set says nothing about a subset)."""
    bar = rules.bars.get(split.name)
    if bar is None or split.layout != rules.layout or len(split) != rules.set_sizes[split.name]:
        return None
    return bar


def resolve_splits(options: CheckOptions, rules: Year, scale: int) -> list[Split]:
    """The valid split (the demo photos without ``--data_dir``), plus test where the year has a test bar and
    the folder has that split."""
    if options.data_dir is None:
        return [demo_split()]
    valid = open_splits(options.data_dir, ["valid"], options.layout, scale)[0]
    spec = LAYOUTS.get(valid.layout, {}).get("test")
    if "test" in rules.bars and valid.layout == rules.layout and spec and (valid.root / spec.hr_dir).is_dir():
        return [valid, *open_splits(options.data_dir, ["test"], valid.layout, scale)]
    return [valid]


def complexity_rules(rules: Year, ours: Complexity, theirs: Complexity, baseline: str) -> list[RuleResult]:
    """Params and the year's FLOPs, each at most the baseline's."""
    p, bp = ours.params, theirs.params
    params = verdict(RULE_PARAMS, p <= bp, f"{p:,} vs {baseline} {bp:,} ({p / bp:.2f}x; must be <= 1.00x)")

    def both(c: Complexity) -> str:
        fv = "n/a" if c.flops_fvcore is None else f"{c.flops_fvcore / 1e9:.2f} G"
        return f"{c.flops_official / 1e9:.2f} G official / {fv} fvcore"

    f, bf = ours.flops(rules.flops_counter), theirs.flops(rules.flops_counter)
    summary = f"ours {both(ours)}, {baseline} {both(theirs)}"
    if f is None or bf is None:
        why = "; ".join(c.errors.get("fvcore", "") for c in (ours, theirs) if c.errors.get("fvcore"))
        return [params, failed(RULE_FLOPS, f"the {rules.year} counter (fvcore) could not count: {summary} ({why})")]
    label = f"{rules.year} counter ({'official hooks' if rules.flops_counter == HOOKS else 'fvcore'})"
    note = f"; {ours.probe_note()}" if ours.varies else ""
    flops = verdict(RULE_FLOPS, f <= bf, f"{f / 1e9:.2f} G vs {bf / 1e9:.2f} G by the {label}, MACs on 3x256x256 "
                                         f"({f / bf:.2f}x; must be <= 1.00x); {summary}{note}")
    return [params, flops]


def time_interleaved(evaluators: Sequence[Evaluator], split: Split, device: torch.device, runs: int) -> list[list[float]]:
    """Per model, per image, the median of ``runs`` timed forwards (after one warm-up each); the models
    alternate on every image, so a slowdown of the machine hits them alike."""
    medians: list[list[float]] = [[] for _ in evaluators]
    for pair in split.pairs:
        lr = pair.load_lr(evaluators[0].scale)
        inputs = [uint8_to_tensor(lr, e.data_range).to(device) for e in evaluators]
        calls = [(lambda e=e, x=x: _no_grad(e.forward, x)) for e, x in zip(evaluators, inputs)]
        for i, samples in enumerate(timing.interleaved(calls, device, runs)):
            medians[i].append(statistics.median(samples))
    return medians


def _no_grad(fn: object, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return fn(x)  # type: ignore[operator]


class SubmissionCheck:
    """Runs every rule on one submission (see the module docstring); :meth:`run` returns the report."""

    def __init__(self, submission: Submission, options: CheckOptions, progress: Progress = QUIET) -> None:
        self.submission = submission
        self.options = options
        self.rules = year_rules(options.year)
        self.device = pick_device(options.device)
        self.progress = progress
        # Everything that can be a usage error is resolved before any rule runs.
        self.baseline_entry: Entry = get_entry(options.baseline or self.rules.baseline)
        self.baseline: Loaded = self.baseline_entry.load(options.baseline_weights, flag="--baseline_weights")
        entry = submission.entry
        self.splits = resolve_splits(options, self.rules, entry.scale if entry else CHALLENGE_SCALE)
        self.report = CheckReport()
        self.loaded: Loaded | None = None
        self.model: nn.Module | None = None
        self.data_range: float = entry.data_range if entry is not None and entry.data_range is not None else 1.0
        self.probes: dict[str, Probe] = {}

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
        s, entry = self.submission, self.submission.entry
        torch.backends.cudnn.benchmark = False
        self._write_header()
        with self.progress.bar(5, "check", unit="stage") as bar:
            bar.status("layout rules")
            self._add(layout.check_model_file_name(s.source))
            self._add(layout.check_weights_name(s.weights, s.source))
            self._add(layout.check_imports(s.source, self.rules))
            scale = entry.scale if entry is not None else CHALLENGE_SCALE
            self._add(verdict(RULE_SCALE, scale == CHALLENGE_SCALE,
                              f"x{scale}" + ("" if scale == CHALLENGE_SCALE else f"; the challenge is x{CHALLENGE_SCALE}")))
            later = [*PROBE_SHAPES, RULE_DETERMINISTIC, RULE_DATA_RANGE, RULE_PARAMS, RULE_FLOPS, RULE_RUNTIME,
                     *self._quality_rules()]
            if entry is None:
                self._add(failed(RULE_MODEL, s.problem or "no model"))
                self._skip_all([RULE_WEIGHTS, *later], "the file gave no model")
                return self.report
            self._add(passed(RULE_MODEL, s.describe()))
            bar.advance("weights")
            with entry.running_on(self.device):
                if not self._load_weights(entry):
                    self._skip_all(later, "the weights did not load")
                    return self.report
                bar.advance("forward probes")
                if not self._forward_rules(entry):
                    self._skip_all([RULE_PARAMS, RULE_FLOPS, RULE_RUNTIME, *self._quality_rules()],
                                   "the model's output is not a valid x4 image")
                    return self.report
                bar.advance("complexity, runtime and PSNR")
                self._efficiency_and_quality_rules(entry)
                bar.advance()
        return self.report

    def _write_header(self) -> None:
        s, entry = self.submission, self.submission.entry
        declared = "not declared" if entry is None or entry.data_range is None else f"{entry.data_range:g}"
        split = self.splits[0]
        sizes = ", ".join(f"{sp.name} {len(sp)} images" for sp in self.splits)
        self.report.header = [
            f"Submission check of {s.describe()} ({s.source}); weights {s.weights or '-'}; "
            f"x{entry.scale if entry else CHALLENGE_SCALE}, data range {declared}",
            f"Baseline {self.baseline_entry.name} (weights {self.baseline.weights}); {self.rules.describe()}",
            f"Device {device_name(self.device)}; data {split.root} ({split.layout} layout: {sizes})",
        ]
        if entry is not None:
            self.report.header += [f"Note: {note}" for note in entry.notes]

    def _load_weights(self, entry: Entry) -> bool:
        try:
            self.loaded = entry.load()
        except KitError as exc:
            self._add(failed(RULE_WEIGHTS, str(exc)))
            return False
        except Exception as exc:  # building the user's model can raise anything
            self._add(failed(RULE_WEIGHTS, f"building or loading the model raised {first_line(exc)}"))
            return False
        self.model = prepare_model(self.loaded.model, self.device)
        keys = len(self.loaded.model.state_dict())
        post = f"; post-load {entry.post_load}" if entry.post_load else ""
        self._add(passed(RULE_WEIGHTS, f"{keys} tensor{'' if keys == 1 else 's'}, {self.loaded.report.describe()}{post}"))
        return True

    def _forward_rules(self, entry: Entry) -> bool:
        """Forward passes, data range and determinism; True when the output has the right size."""
        assert self.model is not None
        shape_ok = True
        for rule, (h, w) in PROBE_SHAPES.items():
            probe = check_forward(rule, self.model, probe_input(h, w, data_range=self.data_range, device=self.device),
                                  entry.scale)
            self.probes[rule] = probe
            shape_ok &= probe.output is not None
        if not shape_ok:
            for probe in self.probes.values():
                self._add(probe.result)
            self._skip_all([RULE_DETERMINISTIC, RULE_DATA_RANGE], "a forward pass failed")
            return False
        # The probes are judged once the images have run (see _judge_probes).
        first = self.probes["forward 3x256x256"].output
        assert first is not None
        self._determinism_result = self._determinism(first)
        self._data_range_result, self.data_range = check_data_range(
            self.model, self.splits[0].pairs[0], entry.scale, entry.data_range, self.device)
        return True

    def _determinism(self, first: torch.Tensor) -> RuleResult:
        assert self.model is not None
        h, w = PROBE_SHAPES["forward 3x256x256"]
        with torch.no_grad():
            second = self.model(probe_input(h, w, data_range=self.data_range, device=self.device))
        if torch.equal(first, second) or torch.allclose(first, second, rtol=0.0, atol=0.0, equal_nan=True):
            return passed(RULE_DETERMINISTIC, "two runs on the same input are bitwise identical")
        diff = float((first - second).abs().nan_to_num().max())
        same_uint8 = np.array_equal(quantise(first, self.data_range).cpu().numpy(), quantise(second, self.data_range).cpu().numpy())
        return verdict(RULE_DETERMINISTIC, same_uint8,
                       f"two runs differ by up to {diff:.3g}; the saved uint8 images are "
                       f"{'identical' if same_uint8 else 'different: fix the randomness (dropout in eval? random ops?)'}")

    def _judge_probes(self, finite_on_images: bool | None, images: str) -> None:
        """The forward rules, now that it is known whether the real images give finite outputs."""
        for rule, probe in self.probes.items():
            if not probe.non_finite:
                self._add(probe.result)
            elif finite_on_images:
                self._add(passed(rule, f"{probe.result.reason}; finite on all {images}: the challenge judges the "
                                       f"images, so this is noted, not failed"))
            else:
                self._add(failed(rule, probe.result.reason + ("" if finite_on_images is None else
                                                              "; not finite on the images either")))

    def _efficiency_and_quality_rules(self, entry: Entry) -> None:
        assert self.model is not None
        base = self.baseline_entry
        with entry.running_on(torch.device("cpu")):  # counted in place on the CPU, the model restored exactly
            ours_c = count(self.model)
        theirs_c = count(self.baseline.model, second_probe=False)
        ours = Evaluator(self.model, scale=entry.scale, data_range=self.data_range, device=self.device,
                         tile=entry.tile, tile_overlap=entry.tile_overlap, source=f"{entry.name} ({self.submission.source.name})")
        theirs = Evaluator(prepare_model(self.baseline.model, self.device), scale=base.scale,
                           data_range=base.data_range, device=self.device, tile=base.tile,  # type: ignore[arg-type]
                           tile_overlap=base.tile_overlap, source=base.name)
        valid = self.splits[0]
        images = f"{sum(len(s) for s in self.splits)} images of {', '.join(s.name for s in self.splits)}"
        try:
            our_records = {split.name: ours.run(split) for split in self.splits}
        except Exception as exc:  # the user's model on real images (sizes, memory, NaN): the reason, not a traceback
            reason = (str(exc) if isinstance(exc, KitError) else
                      f"running the model on the {valid.root} images raised {first_line(exc)}")
            self._judge_probes(False if isinstance(exc, NonFiniteOutput) else None, images)
            self._add(self._determinism_result)
            self._add(self._data_range_result)
            self.report.results += complexity_rules(self.rules, ours_c, theirs_c, base.name)
            self.report.results += [failed(rule, reason) for rule in (RULE_RUNTIME, *self._quality_rules())]
            return
        self._judge_probes(True, images)
        self._add(self._determinism_result)
        self._add(self._data_range_result)
        self.report.results += complexity_rules(self.rules, ours_c, theirs_c, base.name)
        base_records = {valid.name: theirs.run(valid)}
        self._add(self._runtime_rule(ours, theirs, our_records[valid.name], base_records[valid.name]))
        for split in self.splits:
            bar = year_bar(self.rules, split)
            if bar is None and split.name not in base_records:
                base_records[split.name] = theirs.run(split)
            self._add(self._psnr_rule(split, our_records[split.name], bar, base_records.get(split.name)))

    def _runtime_rule(self, ours: Evaluator, theirs: Evaluator, our_valid: SplitRecord,
                      base_valid: SplitRecord) -> RuleResult:
        split = self.splits[0]
        runs = max(self.options.runs, 1)
        mine, base = time_interleaved([ours, theirs], split, self.device, runs)
        ratio = sum(mine) / sum(base)
        cold = f"{our_valid.mean_runtime_ms:.2f} vs {base_valid.mean_runtime_ms:.2f} ms"
        return verdict(
            RULE_RUNTIME, ratio <= 1.0,
            f"{ratio:.2f}x the baseline ({mean(mine):.2f} vs {self.baseline_entry.name} {mean(base):.2f} ms "
            f"per image: median of {runs} interleaved warm runs, {len(split)} {split.name} images; challenge "
            f"protocol mean {cold}); must be <= 1.00x",
        )

    def _psnr_rule(self, split: Split, ours: SplitRecord, bar: float | None, base: SplitRecord | None) -> RuleResult:
        """Against the year's bar where it applies, else against the baseline on the same images."""
        rule = f"PSNR {split.name}"
        value = ours.mean("psnr")
        if bar is not None:
            return verdict(rule, value >= bar, f"{value:.2f} dB vs the NTIRE {self.rules.year} bar {bar:.2f} dB "
                                               f"({len(split)} images; must be >=)")
        assert base is not None
        base_value = base.mean("psnr")
        why = (f"{split.layout} layout" if split.layout != self.rules.layout
               else f"{len(split)} of the {self.rules.set_sizes.get(split.name, '?')} images")
        return verdict(
            rule, value >= base_value,
            f"{value:.2f} dB vs {self.baseline_entry.name} {base_value:.2f} dB on the same {len(split)} images "
            f"(must be >=; the NTIRE {self.rules.year} bar is for {self.rules.sets}, here {why})",
        )


def run_check(submission: Submission, options: CheckOptions, progress: Progress = QUIET) -> CheckReport:
    """Check ``submission`` against ``options``; the report's ``passed`` is True only if every rule passed."""
    return SubmissionCheck(submission, options, progress).run()


__all__ = ["CheckOptions", "Submission", "check_data_range", "check_forward", "complexity_rules",
           "run_check", "time_interleaved", "year_bar"]
