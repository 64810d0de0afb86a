"""The measuring package: timing helpers on fixed calls (no test depends on how fast the machine is) and
the complexity counters' one error policy and input-dependence detection."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from esrkit.errors import KitError
from esrkit.measure import probe, timing
from esrkit.measure.complexity import count

CPU = torch.device("cpu")


def test_interleaved_alternates_after_the_warm_up() -> None:
    calls: list[str] = []
    samples = timing.interleaved([lambda: calls.append("a"), lambda: calls.append("b")], CPU, runs=3, warmup=1)
    assert calls == ["a", "b"] * 4 and [len(s) for s in samples] == [3, 3] and all(ms >= 0 for s in samples for ms in s)


def test_repeat_runs_the_warm_up_untimed() -> None:
    calls: list[int] = []
    samples = timing.repeat(lambda: calls.append(1), CPU, runs=4, warmup=2)
    assert len(calls) == 6 and len(samples) == 4


def test_summary_of_fixed_samples() -> None:
    s = timing.Summary.of([1033.76, 9.5, 9.9, 10.1, 9.7])  # a cold first image, as in the official runs
    assert s.first == 1033.76 and s.median == 9.9 and s.mean == pytest.approx(214.592)
    assert s.iqr == pytest.approx(10.1 + (1033.76 - 10.1) / 2 - 9.6, abs=1e-9)  # statistics.quantiles, exclusive
    assert timing.Summary.of([3.0]).iqr == 0.0
    with pytest.raises(ValueError):
        timing.Summary.of([])


def test_a_deferred_stopwatch_off_cuda_times_at_once() -> None:
    watch = timing.Stopwatch(CPU, deferred=True)
    out, ms = watch.time(lambda: 7)
    assert out == 7 and ms >= 0 and watch.resolve() == []


class Routed(nn.Module):
    """Takes one of two branches by the input's mean: its counts depend on the probe (a mixture of experts, in small)."""

    def __init__(self) -> None:
        super().__init__()
        self.light = nn.Conv2d(3, 3, 1)
        self.heavy = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heavy(x) if float(x[0, 0, 0, 0]) > 0.5 else self.light(x)


def test_counts_that_depend_on_the_input_are_detected_and_the_probe_named() -> None:
    first, second = float(probe.seeded_rand((3, 256, 256), probe.SEED)[0, 0, 0, 0]), float(probe.photo_lr()[0, 0, 0, 0])
    assert (first > 0.5) != (second > 0.5), "the two probes must take different branches for this test"
    c = count(Routed(), counters=("official",))
    assert set(c.varies) == {"flops_official", "activations", "num_conv"}
    assert c.varies["num_conv"] in ((1, 2), (2, 1)) and c.num_conv == c.varies["num_conv"][0]
    note = c.probe_note()
    assert "manual_seed(0)" in note and "INPUT-DEPENDENT" in note and probe.PHOTO in note
    static = count(nn.Conv2d(3, 3, 1), counters=("official",))
    assert static.varies == {} and "INPUT-DEPENDENT" not in static.probe_note()


def test_one_error_policy_official_must_count_the_others_are_recorded() -> None:
    class TracerHostile(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing():
                raise RuntimeError("cannot be traced")
            return self.conv(x)

    c = count(TracerHostile(), counters=("official", "fvcore"), second_probe=False)
    assert c.flops_fvcore is None and "fvcore could not trace the model (RuntimeError: cannot be traced)" in c.errors["fvcore"]
    assert c.flops_official == 3 * 3 * 256 * 256 and c.num_conv == 1

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("needs 4 channels")

    with pytest.raises(KitError, match=r"Broken fails on the 3x256x256 complexity probe \(ValueError: needs 4 channels\)"):
        count(Broken())
