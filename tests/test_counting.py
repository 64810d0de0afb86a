"""``count()``, the one-pass counting every command uses: it must give exactly what each counter gives on its own
forward, find input dependence, survive a network fvcore cannot trace, and leave the model exactly as it was.

References: the counters' libraries called directly on copies (fvcore's ``FlopCountAnalysis``, ptflops'
``get_model_complexity_info``), the kit's hook counter on a plain forward of its own, and counts worked out by
hand for the small networks written here. No timing is asserted.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from esrkit.errors import KitError
from esrkit.measure import probe
from esrkit.measure.complexity import count, official_counts
from esrkit.registry import get_entry
from tests.conftest import torch_threads
from tests.test_measure import Routed  # takes one of two branches of modules by the input

HW = 256 * 256  # the probe's spatial size
FIRST_BRANCH_HEAVY = float(probe.seeded_rand((3, 256, 256), probe.SEED)[0, 0, 0, 0]) > 0.5


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def fvcore_direct(model: nn.Module) -> tuple[int, dict[str, int]]:
    """fvcore as the 2024-2025 kits call it, on a copy with gradients off: total and skipped operators."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    analysis = FlopCountAnalysis(m, probe.seeded_rand((3, 256, 256)))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return int(analysis.total()), {op: int(n) for op, n in analysis.unsupported_ops().items()}


class forwards_counted:
    """How many times ``model`` runs inside the block (a hook of the caller's own, which counting keeps)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.calls = model, 0

    def __enter__(self) -> "forwards_counted":
        self.handle = self.model.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def ptflops_direct(model: nn.Module) -> int:
    """ptflops' own call (pytorch backend, its own uninitialised input) on a trainable copy."""
    from ptflops import get_model_complexity_info

    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(True)
    macs, _ = get_model_complexity_info(m, (3, 256, 256), as_strings=False, print_per_layer_stat=False,
                                        verbose=False, backend="pytorch")
    return int(macs)


class Zoo(nn.Module):
    """One of each kind of operation the counters treat differently, on few channels: modules the hook counter
    sees (conv, BN, LeakyReLU, Linear, transposed conv), functionals and tensor methods that ptflops wraps
    (F.relu, torch.add, Tensor.mul, F.max_pool2d, F.interpolate, torch.matmul), ones nobody counts alike."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.LeakyReLU(0.1)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(4, 4)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.tail = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        y = torch.add(y, F.relu(y)).mul(torch.sigmoid(y))
        s = F.interpolate(F.max_pool2d(y, 2), scale_factor=2, mode="bilinear", align_corners=False)
        y = self.gelu(y + s)
        y = self.fc(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = torch.matmul(y[:, :, :32, :], y[:, :, :, :32]).mean() + y
        return self.tail(self.up(y))


def test_one_pass_equals_each_counter_on_its_own_forward_on_every_kind_of_operation() -> None:
    model = Zoo().eval()
    interpolate, add, mul = F.interpolate, torch.add, torch.Tensor.mul
    with forwards_counted(model) as forwards:
        c = count(model)
    assert forwards.calls == 2  # a network that does not route: one traced forward and one on the second probe
    counts = (c.params, c.flops_official, c.activations, c.num_conv, c.flops_fvcore, c.flops_ptflops)
    assert all(type(n) is int for n in counts), counts  # plain ints, though sizes are tensors while jit traces
    alone = official_counts(model)
    assert (c.params, c.flops_official, c.activations, c.num_conv) == (alone.params, alone.flops, alone.activations,
                                                                       alone.num_conv)
    assert (c.flops_fvcore, c.fvcore_unsupported) == fvcore_direct(model)
    assert c.flops_ptflops == ptflops_direct(model)  # counted once, though ptflops' wrappers ran under the trail
    assert c.varies == {} and c.errors == {}
    assert (F.interpolate, torch.add, torch.Tensor.mul) == (interpolate, add, mul)  # nothing left patched


def test_one_pass_equals_each_counter_on_mlrn_entire(caplog: pytest.LogCaptureFixture) -> None:
    model = get_entry("MLRN-entire").build()
    with caplog.at_level(logging.WARNING), forwards_counted(model) as forwards:
        c = count(model)
    assert forwards.calls == 2
    alone = official_counts(model)
    assert (c.params, c.flops_official, c.activations, c.num_conv) == (alone.params, alone.flops, alone.activations,
                                                                       alone.num_conv)
    assert (c.flops_fvcore, c.fvcore_unsupported) == fvcore_direct(model)
    assert c.flops_ptflops == ptflops_direct(model)
    assert c.varies == {} and c.errors == {}
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]


class Stateful(nn.Module):
    """Everything counting could disturb: a user's hook, a submodule left in training mode, a frozen and a
    trainable parameter, a buffer and an attribute the forward changes, a branch it fuses and deletes on its
    first call (as team 08's FRnet does)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.fused = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.done = False
        self.hook_calls = 0
        self.register_forward_hook(self.users_hook)

    def users_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.hook_calls += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.done:
            self.fused.weight.data = self.a.weight.data + self.b.weight.data
            self.fused.bias.data = self.a.bias.data + self.b.bias.data
            del self.a, self.b
            self.done = True
        self.calls += 1
        self.last_shape = tuple(x.shape)
        return self.norm(self.fused(x))


def state_of(model: nn.Module) -> dict:
    """What must come back unchanged: tensors (values, identity, device, requires_grad), flags, attributes, hooks."""
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "ids": [id(p) for p in model.parameters()] + [id(b) for b in model.buffers()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "devices": {p.device for p in model.parameters()},
        "training": [m.training for m in model.modules()],
        "attributes": {name: sorted(vars(m)) for name, m in model.named_modules()},
        "hooks": {name: (list(m._forward_hooks.values()), list(m._forward_pre_hooks.values()))
                  for name, m in model.named_modules()},
        "submodules": [name for name, _ in model.named_modules()],
    }


def assert_same_state(model: nn.Module, before: dict) -> None:
    after = state_of(model)
    assert after["tensors"].keys() == before["tensors"].keys()
    assert all(torch.equal(after["tensors"][k], v) for k, v in before["tensors"].items())
    assert {k: v for k, v in after.items() if k != "tensors"} == {k: v for k, v in before.items() if k != "tensors"}


def stateful_model() -> Stateful:
    model = Stateful().train()
    model.norm.eval()
    model.a.weight.requires_grad_(False)
    return model


def test_the_model_comes_back_exactly_as_it_was() -> None:
    model = stateful_model()
    before = state_of(model)
    with forwards_counted(model) as forwards:
        c = count(model)
    assert forwards.calls == 2  # each forward saw the unfused model: the same trail on both probes
    assert_same_state(model, before)
    assert model.done is False and model.calls.item() == 0 and not hasattr(model, "last_shape")
    assert model.hook_calls == 0  # the user's hook stays registered, and counting did not run it into the model's state
    # Every counter saw the model as given (fusing on its first call): one 3x3 conv and an affine BatchNorm, alike
    # on both probes.
    assert (c.num_conv, c.activations, c.flops_official) == (1, 3 * HW, 9 * 3 * 3 * HW + 2 * 3 * HW) and c.varies == {}
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8))
    assert model.hook_calls == 1 and model.done and not hasattr(model, "a")  # it still works as it did


def test_the_model_comes_back_when_its_forward_fails() -> None:
    class FailsAfterChanging(Stateful):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            super().forward(x)
            raise ValueError("needs 4 channels")

    model = FailsAfterChanging().train()
    before = state_of(model)
    with pytest.raises(KitError, match=r"FailsAfterChanging fails on the 3x256x256 complexity probe \(ValueError"):
        count(model)
    assert_same_state(model, before)


class RoutedFunctionally(nn.Module):
    """The same modules on every input; the input picks only the upsampling mode of a functional call (bilinear:
    4 fvcore MACs per output element, nearest: 1), which the hook counter never sees."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "bilinear" if float(x[0, 0, 0, 0]) > 0.5 else "nearest"
        return F.interpolate(self.conv(x), scale_factor=2, mode=mode)


def in_probe_order(heavy: int, light: int) -> tuple[int, int]:
    return (heavy, light) if FIRST_BRANCH_HEAVY else (light, heavy)


def test_input_dependence_through_modules_is_found_by_every_counter() -> None:
    second = float(probe.photo_lr()[0, 0, 0, 0]) > 0.5
    assert second != FIRST_BRANCH_HEAVY, "the two probes must take different branches for this test"
    c = count(Routed(), counters=("official", "fvcore"))
    heavy_macs, light_macs = (9 * 3 * 8 + 9 * 8 * 3) * HW, 3 * 3 * HW
    assert c.varies == {"flops_official": in_probe_order(heavy_macs, light_macs),
                        "activations": in_probe_order(11 * HW, 3 * HW), "num_conv": in_probe_order(2, 1),
                        "flops_fvcore": in_probe_order(heavy_macs, light_macs)}
    assert (c.flops_official, c.flops_fvcore) == (c.varies["flops_official"][0], c.varies["flops_fvcore"][0])


class BranchesOnItsMean(nn.Module):
    """A brighter input takes the heavy branch: a branch on the input's mean, which noise drawn like the official probe
    (mean 0.5) cannot take two ways, and a real photo (mean 0.45) does."""

    def __init__(self) -> None:
        super().__init__()
        self.light = nn.Conv2d(3, 3, 1)
        self.heavy = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heavy(x) if x.mean() > 0.48 else self.light(x)


def test_a_branch_on_the_inputs_mean_is_found_by_the_photo_probe() -> None:
    means = [float(probe.seeded_rand((3, 256, 256), seed).mean()) for seed in range(5)]
    assert all(m > 0.49 for m in means)  # noise like the official probe's: every draw takes the heavy branch
    assert float(probe.photo_lr().mean()) < 0.46  # the photo takes the light one
    c = count(BranchesOnItsMean(), counters=("official", "fvcore"))
    assert c.varies["flops_official"] == (9 * 3 * 3 * HW, 3 * 3 * HW)
    assert "INPUT-DEPENDENT: on a second probe (scikit-image's astronaut.png" in c.probe_note()


def test_input_dependence_the_hooks_cannot_see_is_found_by_the_trail() -> None:
    c = count(RoutedFunctionally())
    conv, out = 3 * 3 * HW, 3 * 4 * HW
    assert c.varies == {"flops_fvcore": in_probe_order(conv + 4 * out, conv + out)}
    assert c.flops_fvcore == c.varies["flops_fvcore"][0] and (c.flops_official, c.num_conv) == (conv, 1)


class TracedDifferently(nn.Module):
    """Runs another layer while jit traces it: the hook counter must still report what a plain forward runs."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Conv2d(3, 3, 1)
        self.large = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.large(x) if torch.jit.is_tracing() else self.small(x)


def test_a_network_traced_differently_keeps_the_plain_forwards_hook_counts() -> None:
    c = count(TracedDifferently(), counters=("official", "fvcore"))
    assert (c.flops_official, c.num_conv) == (3 * 3 * HW, 1)  # the plain forward: the 1x1 conv
    assert c.flops_fvcore == 9 * 3 * 3 * HW == fvcore_direct(TracedDifferently())[0]  # what fvcore's trace sees
    assert c.varies == {}


class Untraceable(nn.Module):
    """Returns a plain number beside its image, which jit tracing (and so fvcore) cannot take."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> dict:
        return {"sr": self.conv(x), "scale": 1}


def test_a_network_fvcore_cannot_trace_still_gets_its_hook_counts() -> None:
    model = Untraceable()
    before = state_of(model)
    c = count(model)
    assert c.flops_fvcore is None and set(c.errors) == {"fvcore"}
    assert c.errors["fvcore"].startswith("fvcore could not trace the model (RuntimeError: ")
    assert (c.params, c.flops_official, c.activations, c.num_conv) == (12, 3 * 3 * HW, 3 * HW, 1)
    assert c.flops_ptflops == 3 * 3 * HW + 3 * HW == ptflops_direct(model)  # MACs + one bias add per output
    assert c.varies == {}
    assert_same_state(model, before)  # fvcore's hooks, left behind by its failed trace, are gone


def test_a_run_on_shapes_alone_gives_what_the_second_probe_gives() -> None:
    """Where a run on shapes alone stands in for the second probe's forward, every count is what the forward gives
    (the baselines and the teams are counted both ways across the suite: its processes take the shape-only run, the
    team processes it starts the forward)."""
    model = get_entry("MLRN-entire").build()
    assert count(model, shape_only=True) == count(model, shape_only=False)


@pytest.mark.parametrize("network", [Routed, RoutedFunctionally, BranchesOnItsMean, TracedDifferently])
def test_a_network_that_reads_its_input_proves_nothing_on_shapes_and_gets_its_second_probe(network) -> None:
    """A network that reads its input's values (or behaves otherwise while traced) cannot run on shapes alone: its
    second probe runs, and finds what it finds without the shape-only run."""
    assert count(network(), shape_only=True) == count(network(), shape_only=False)
