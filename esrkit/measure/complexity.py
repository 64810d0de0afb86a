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

Beside it, for comparison (optional dependencies, imported only when called):
``fvcore_counts`` (the 2024-2025 FLOPs column: conv MACs + 4 per output element of a bilinear
upsample, other elementwise ops skipped and reported) and ``ptflops_counts`` (pytorch backend:
adds bias, activation modules, pooling and interpolation outputs). All three report MACs.

:func:`count` is what every command calls: all counters with one error policy (the official
counter must work; fvcore or ptflops failing is recorded, never a crash), counted on the seeded
probe and once more on a second one, so a network whose counts depend on its input (a mixture of
experts routing per input) is reported as such rather than with one number that looks exact.

How :func:`count` costs two forwards where the official kits need three, without changing a count:

1. **One forward for the official counter and fvcore.** The hook counter's hooks stay on while
   fvcore's jit tracer runs the model: hooks fire during tracing, and they run with the tracer
   paused, so nothing of theirs enters the traced graph: fvcore's figures are those of a trace
   without them. A model fvcore cannot trace gets a plain forward for the hook counts instead.
2. **One forward for the second probe**, a real LR photo (not noise: uniform noise has the official probe's
   mean, so a branch on the input's mean would go the same way on both): the hook counter, with ptflops riding on
   it (ptflops reads shapes only, so which probe it runs on does not matter for a network that does not route).
   Where runs on shapes alone cost nothing to start (:func:`shape_only_is_cheap`: a long-lived process) one of
   those stands in for that forward when it proves there is nothing to find (:func:`_proves_shape_only`): a meta
   copy of the model takes the first forward's operations on the same shapes without reading a value -- so any
   input of this size gives the same counts. The counts are the same either way.
3. **fvcore runs again only where the probes differ.** Both forwards record their *trail*: every
   torch function called inside the model, with the shapes (and plain arguments) it was given and
   gave back, and every module call with its output shape. Every counter here is a function of what
   ran on which shapes, so the same trail and the same hook counts on both probes mean that fvcore
   and ptflops would count the second probe exactly as the first. (This is sharper than looking for
   tracer warnings: a harmless ``int(tensor)`` sets those off, while a boolean mask that changes a
   shape does not.) Where the trails or hook counts differ -- the network routes by its input, or it
   behaves differently while traced -- every counter runs on its own forward, as before: the
   official counts from plain forwards on both probes, fvcore traced on both, ptflops on the first.
4. **In place, not on copies.** Each forward sees the model as it was given, in eval mode, with the
   ``requires_grad`` its counter needs: whatever a counter or a forward changed (training flags,
   ``requires_grad``, parameter and buffer values, attributes and submodules a network changes in its
   own forward, the hooks fvcore leaves behind when its trace fails, the attributes ptflops adds) is
   put back before the next forward and, in a ``finally``, at the end. ptflops' forward runs
   without autograd: it used to keep every activation for a backward that never came, most of the
   old peak memory.

A model that is not (entirely) on the CPU is counted on a CPU copy, as before: counting on a GPU
would warm it (cuDNN's lazy start) before its cold first image is timed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import sys
import warnings
from dataclasses import dataclass
from math import prod
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from esrkit.device import explain_failure
from esrkit.errors import KitError, first_line
from esrkit.measure import probe

INPUT_SHAPE = probe.COMPLEXITY_SHAPE
RELU_FAMILY = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
CONVS = (nn.Conv2d, nn.ConvTranspose2d)
COUNTED = CONVS + RELU_FAMILY + (nn.BatchNorm2d, nn.Linear)  # the modules the official counter sees
T = TypeVar("T")


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


# --- counting in place: the model comes back exactly as it was ----------------------------------

_CONTAINERS = (dict, list, set)  # module attributes whose contents are saved, not only the object


class _Snapshot:
    """What counting may change in a model, taken before and put back after: every module's attributes (its
    training flag, hook tables, parameter / buffer / submodule tables, anything a counter or a forward added or
    replaced) and every parameter's and buffer's values, device and ``requires_grad``."""

    def __init__(self, model: nn.Module) -> None:
        self._modules = [(m, dict(vars(m)), {k: copy.copy(v) for k, v in vars(m).items() if isinstance(v, _CONTAINERS)})
                         for m in model.modules()]
        tensors = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}.values()
        self._tensors = [(t, t.detach().clone(), t.requires_grad) for t in tensors]

    def restore(self) -> None:
        for module, attributes, contents in self._modules:
            current = vars(module)
            for key in [k for k in current if k not in attributes]:
                del current[key]
            current.update(attributes)
            for key, saved in contents.items():  # the same container objects, their contents as they were
                container = attributes[key]
                if isinstance(container, list):
                    container[:] = saved
                else:
                    container.clear()
                    container.update(saved)
        with torch.no_grad():
            for tensor, saved, requires_grad in self._tensors:
                if (tensor.device, tensor.dtype, tensor.shape) != (saved.device, saved.dtype, saved.shape):
                    tensor.data = saved.clone()  # replaced by one of another kind (moved, cast, resized)
                elif not torch.equal(tensor, saved):
                    tensor.copy_(saved)
                if tensor.requires_grad != requires_grad:
                    tensor.requires_grad_(requires_grad)


def _on_cpu(model: nn.Module) -> bool:
    return all(t.device.type == "cpu" for t in itertools.chain(model.parameters(), model.buffers()))


class _Subject:
    """The model as every counter sees it: as it was given, in eval mode, before each forward.

    A network may change itself in a forward (team 08's fuses its branches and deletes them on the first
    call), so the state is put back before every forward, as separate copies gave each counter the model as
    given, and once more at the end. A model not entirely on the CPU is counted on a CPU copy."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model if _on_cpu(model) else copy.deepcopy(model).cpu()
        self._snapshot = _Snapshot(self._model)

    @property
    def name(self) -> str:
        return type(self._model).__name__

    def fresh(self) -> nn.Module:
        """The model, put back as it was given, in eval mode."""
        self._snapshot.restore()
        return self._model.eval()

    def restore(self) -> None:
        self._snapshot.restore()


@contextlib.contextmanager
def _counted(model: nn.Module) -> Iterator[_Subject]:
    """``model`` to count, restored exactly afterwards whatever happens."""
    subject = _Subject(model)
    try:
        yield subject
    finally:
        subject.restore()


@contextlib.contextmanager
def _untraced() -> Iterator[None]:
    """Nothing recorded into a jit trace in progress (fvcore's): the counters' own arithmetic stays out of the traced
    graph, and sizes read in here are plain ints (while tracing, torch returns them as tensors)."""
    state = torch._C._get_tracing_state()
    if state is None:
        yield
        return
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def _signature(value: Any) -> Any:
    """What decides a count about a value: a tensor's shape and dtype; an integer's value (a 0-dim integer tensor
    too: sizes are such tensors while jit traces, and an index picks what runs next); a string's; containers element
    by element. A float's value changes no count (a scale factor that changes a shape shows in the shapes), so it is
    left out, as are other objects' (by type)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 and not (value.is_floating_point() or value.is_complex()):
            return value.item()
        return tuple(value.shape), value.dtype
    if isinstance(value, (float, complex)):
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _signature(v)) for k, v in value.items())
    if isinstance(value, slice):
        return "slice", _signature(value.start), _signature(value.stop), _signature(value.step)
    if value is None or isinstance(value, (bool, int, str, torch.dtype, torch.device, torch.memory_format, torch.layout)):
        return value
    return type(value).__qualname__


_WRAPPABLE = (nn.functional, torch, torch.Tensor)  # where counters replace torch functions with wrappers
_MISSING = object()


def _holds_array(value: Any) -> bool:
    """Whether ``value`` is or holds a tensor of at least one dimension (what an operation computes, as opposed to
    a size or a scalar)."""
    if isinstance(value, torch.Tensor):
        return value.dim() > 0
    return isinstance(value, (list, tuple)) and any(map(_holds_array, value))


class _Recorder(TorchFunctionMode):
    """One forward, watched: the official counter's totals (hooks on the counted modules) and the trail (every
    module call and every tensor-valued torch operation inside the model's forward, with its shapes).

    Metadata queries (``.shape``, ``numel()``, ...) and 0-dim results are left out (while tracing, sizes are 0-dim
    tensors), so a traced and a plain forward of the same network leave the same trail, and the counters' own
    hooks (which read shapes) leave no mark on it. The hooks run untraced: nothing of theirs enters fvcore's graph.

    A counter that wraps torch functions for the forward (ptflops replaces ``F.relu``, ``torch.add``, ... with
    wrappers that count, then call the original) must still count each call once. A torch function called while
    this mode is on is handed to it under its *current* name -- the wrapper -- so calling that again would count
    twice: the mode calls the function the wrapper replaced instead (found by comparing the namespaces with
    how they were before the counter started)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.flops = self.activations = self.num_conv = 0
        self.trail: list[tuple] = []
        self._inside = False
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._namespaces_before: list[dict[str, Any]] = []
        self._replaced: dict[int, Callable] = {}  # id(wrapper) -> the function it replaced

    def __enter__(self) -> "_Recorder":
        self._namespaces_before = [dict(vars(ns)) for ns in _WRAPPABLE]
        root = self.model
        try:
            self._handles.append(root.register_forward_pre_hook(self._enter_forward))
            for m in root.modules():
                self._handles.append(m.register_forward_hook(self._module_called))
            self._handles.append(root.register_forward_hook(self._leave_forward))
            return super().__enter__()
        except BaseException:
            self._remove_hooks()
            raise

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _enter_forward(self, module: nn.Module, inputs: tuple) -> None:
        self._inside = True
        for namespace, before in zip(_WRAPPABLE, self._namespaces_before):
            for name, value in vars(namespace).items():
                original = before.get(name, _MISSING)
                if original is _MISSING and isinstance(namespace, type):  # a method set on the class over its base's
                    original = next((vars(b)[name] for b in namespace.__mro__[1:] if name in vars(b)), _MISSING)
                if value is not original and original is not _MISSING:
                    self._replaced[id(value)] = original

    def _leave_forward(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        self._inside = False

    def _module_called(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        with _untraced():
            if isinstance(module, COUNTED):
                self.flops += _layer_flops(module, inputs, output)
                if isinstance(module, CONVS):
                    self.activations += output.numel()
                    self.num_conv += 1
            if self._inside:
                self.trail.append((type(module).__qualname__, _signature(output)))

    def __torch_function__(self, func: Callable, types: tuple, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        func = self._replaced.get(id(func), func)
        out = func(*args, **kwargs)
        if self._inside:
            with _untraced():
                if _holds_array(out):
                    name = getattr(func, "__qualname__", None) or repr(func)
                    self.trail.append((name, _signature(args), _signature(kwargs), _signature(out)))
        return out

    def counts(self) -> OfficialCounts:
        return OfficialCounts(count_params(self.model), self.flops, self.activations, self.num_conv)


def _random_input(input_shape: tuple[int, ...], which: int | str = probe.SEED) -> torch.Tensor:
    """``torch.rand(1, *input_shape)`` as the kits draw it, seeded so a run is reproducible; or, for
    :data:`probe.PHOTO_PROBE`, a real LR image of that size (the second probe)."""
    if which == probe.PHOTO_PROBE:
        return probe.photo_lr(input_shape[1], input_shape[2])
    return probe.seeded_rand(tuple(input_shape), int(which))


def _watched(subject: _Subject, seed: int | str, forward: Callable[[nn.Module, torch.Tensor], T],
             input_shape: tuple[int, ...] = INPUT_SHAPE) -> tuple[OfficialCounts, tuple, T]:
    """``forward(model, probe)`` on the model as given, with the official counter and the trail recorder on: the
    official counts, the trail and what ``forward`` returned."""
    model = subject.fresh()
    x = _random_input(input_shape, seed)
    with _Recorder(model) as recorder:
        result = forward(model, x)
    return recorder.counts(), tuple(recorder.trail), result


def _plain_forward(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        model(x)


def official_counts(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE, seed: int = probe.SEED) -> OfficialCounts:
    """Params, FLOPs (MACs), activations and #conv of ``model`` under the official convention."""
    with _counted(model) as subject:
        return _watched(subject, seed, _plain_forward, input_shape)[0]


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


def _fvcore_forward(model: nn.Module, x: torch.Tensor) -> FvcoreCounts:
    """fvcore's analysis of one traced forward of ``model`` on ``x``, gradients off as the kits' select_model
    leaves the model. fvcore's own warnings are silenced; what it skipped is in ``unsupported_ops``."""
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
    for p in model.parameters():
        p.requires_grad_(False)
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return FvcoreCounts(
        macs=int(analysis.total()),
        macs_by_operator={op: int(n) for op, n in analysis.by_operator().items()},
        unsupported_ops={op: int(n) for op, n in analysis.unsupported_ops().items()},
    )


def _ptflops_forward(model: nn.Module, x: torch.Tensor) -> PtflopsCounts:
    """ptflops (pytorch backend) on one forward of ``model`` on ``x``, without autograd; every parameter requires
    grad for the count, as ptflops counts only those."""
    try:
        from ptflops import get_model_complexity_info
    except ImportError:
        raise KitError(
            "ptflops is not installed; it is an optional dependency of the complexity comparison. "
            "Install it: pip install ptflops==0.7.5"
        ) from None
    for p in model.parameters():
        p.requires_grad_(True)
    # Its counts read shapes only, so nothing needs keeping for a backward. When the forward fails it prints the
    # exception and a traceback: that output is dropped (the failure is reported in one line); otherwise what was
    # printed is the model's own and is passed on.
    out, err = io.StringIO(), io.StringIO()
    with torch.no_grad(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        macs, params = get_model_complexity_info(model, tuple(x.shape[1:]), as_strings=False,
                                                 print_per_layer_stat=False, verbose=False, backend="pytorch",
                                                 input_constructor=lambda _: x)
    if macs is None or params is None:
        raise KitError(f"ptflops could not count {type(model).__name__} (its forward failed on a {tuple(x.shape[1:])} input)")
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())
    return PtflopsCounts(macs=int(macs), params=int(params))


def fvcore_counts(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE, seed: int = probe.SEED) -> FvcoreCounts:
    """fvcore's total, per-operator MACs and skipped operators, on ``torch.rand(1, *input_shape)``.

    fvcore's own warnings (unsupported operators, uncalled modules, tracer warnings) are silenced;
    what it skipped is returned in :attr:`FvcoreCounts.unsupported_ops` instead.
    """
    with _counted(model) as subject:
        return _fvcore_forward(subject.fresh(), _random_input(input_shape, seed))


def ptflops_counts(model: nn.Module, input_shape: tuple[int, ...] = INPUT_SHAPE, seed: int = probe.SEED) -> PtflopsCounts:
    """ptflops' MACs and params with ``backend='pytorch'`` on ``torch.rand(1, *input_shape)``.

    ptflops reads shapes only, so the input's values do not change its count for a network that does not route
    by its input; it is given the seeded probe (left to itself it draws uninitialised memory).
    """
    with _counted(model) as subject:
        return _ptflops_forward(subject.fresh(), _random_input(input_shape, seed))


# --- every counter at once, as the commands report them ----------------------------------------

COUNTERS = ("official", "fvcore", "ptflops")
_FAILED = {"fvcore": "could not trace", "ptflops": "could not count"}


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
            text += (f"; INPUT-DEPENDENT: on a second probe ({probe.PHOTO_TEXT}) {changes} -- the official "
                     f"kits' unseeded probes give a different number on every run for this network")
        return text


@dataclass(frozen=True)
class _Pass:
    """One watched forward: the official counts, its trail, and the third-party count that rode on it."""

    official: OfficialCounts
    trail: tuple
    fvcore: FvcoreCounts | None = None
    ptflops: PtflopsCounts | None = None
    traced: bool = False


def _attempt(counter: str, errors: dict[str, str], run: Callable[[], T]) -> T | None:
    """``run()``, or None with the reason in ``errors[counter]``: a third-party counter failing on user code is
    the finding, not a crash."""
    try:
        return run()
    except KitError as exc:
        errors[counter] = str(exc)
    except Exception as exc:
        errors[counter] = f"{counter} {_FAILED[counter]} the model ({first_line(exc)})"
    return None


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose every tensor -- parameters, buffers, and tensors it keeps as plain attributes -- is on
    the meta device: same shapes and dtypes, no values (and no copy of the weights' memory)."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    clone = copy.deepcopy(model, memo)
    for module in clone.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.device.type != "meta":
                vars(module)[name] = torch.empty_like(value, device="meta")
    return clone


def _as_on_cpu(value: Any) -> Any:
    """A shape-only run's trail as a CPU run's reads: the ``meta`` device named ``cpu``."""
    if isinstance(value, torch.device):
        return torch.device("cpu") if value.type == "meta" else value
    if isinstance(value, tuple):
        return tuple(_as_on_cpu(v) for v in value)
    return value


def _proves_shape_only(subject: _Subject, first: _Pass, input_shape: tuple[int, ...] = INPUT_SHAPE) -> bool:
    """Whether a meta copy of the model, on a meta probe (shapes and dtypes, no values), runs without reading a single
    value and takes exactly the operations, on the same shapes, of the first probe's forward -- with the same official
    counts. Then every count is the same on any input of this size: what the second probe is for is proven without its
    forward. A network that reads a value (``bool(x.mean() > 0.5)``, ``.item()``, an index taken from its input: each
    raises on meta tensors), mixes in a tensor of its own making, behaves otherwise while traced, or uses an operation
    with no meta implementation proves nothing here, and its second probe runs."""
    try:
        meta = _meta_copy(subject.fresh())
        with _Recorder(meta) as recorder, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta(torch.empty((1, *input_shape), device="meta"))
    except Exception:  # noqa: BLE001 - whatever it does on values it cannot read: not provable this way
        return False
    finally:
        subject.restore()
    return (recorder.counts(), _as_on_cpu(tuple(recorder.trail))) == (first.official, first.trail)


def _plain_pass(subject: _Subject, seed: int | str, errors: dict[str, str], with_ptflops: bool = False) -> _Pass:
    """The hook counts of a plain forward on ``seed``, with ptflops riding on it when asked (if ptflops fails, the
    reason goes into ``errors`` and a forward of its own gives the hook counts)."""
    if with_ptflops:
        errors.pop("ptflops", None)
        done = _attempt("ptflops", errors, lambda: _watched(subject, seed, _ptflops_forward))
        if done is not None:
            return _Pass(done[0], done[1], ptflops=done[2])
    try:
        official, trail, _ = _watched(subject, seed, _plain_forward)
    except Exception as exc:  # user code on the probe: the reason, in one line
        raise KitError(f"{subject.name} fails on the 3x256x256 complexity probe ({explain_failure(exc)})") from None
    return _Pass(official, trail)


def _traced_pass(subject: _Subject, seed: int | str, errors: dict[str, str]) -> _Pass | None:
    """The hook counts and fvcore's from one traced forward on ``seed``; None (reason in ``errors``) if it fails."""
    done = _attempt("fvcore", errors, lambda: _watched(subject, seed, _fvcore_forward))
    return None if done is None else _Pass(done[0], done[1], fvcore=done[2], traced=True)


def _changes(first: OfficialCounts, second: OfficialCounts) -> dict[str, tuple[int, int]]:
    pairs = {"params": (first.params, second.params), "flops_official": (first.flops, second.flops),
             "activations": (first.activations, second.activations), "num_conv": (first.num_conv, second.num_conv)}
    return {k: (a, b) for k, (a, b) in pairs.items() if a != b}


def count(model: nn.Module, counters: tuple[str, ...] = COUNTERS, second_probe: bool = True,
          shape_only: bool | None = None) -> Complexity:
    """Every count of ``model`` (as deployed: weights loaded, post-load step applied) on the seeded probe.

    With ``second_probe`` the counts are taken again on another probe, and the counts that change are reported in
    :attr:`Complexity.varies` (see the module docstring for how few forwards that takes). ``shape_only`` lets a run on
    shapes alone stand in for the second probe's forward where it proves it would find nothing (None: where it costs
    nothing to start, :func:`shape_only_is_cheap`); the counts are the same either way. The model is counted in
    place on the CPU and comes back exactly as it was.
    """
    unknown = set(counters) - set(COUNTERS)
    if unknown:
        raise ValueError(f"unknown counters {sorted(unknown)}; known: {COUNTERS}")
    shape_only = shape_only_is_cheap() if shape_only is None else shape_only
    with _counted(model) as subject:
        return _count(subject, "fvcore" in counters, "ptflops" in counters, second_probe, shape_only)


def shape_only_is_cheap() -> bool:
    """Whether this process has paid for runs on shapes alone already: torch's implementations for meta tensors import
    ``torch._dynamo`` on first use (about 1.3 s on this project's CPU, more than a second forward of most networks),
    which a long-lived process -- a notebook, a test session -- has done once."""
    return "torch._dynamo" in sys.modules


def _count(subject: _Subject, with_fvcore: bool, with_ptflops: bool, second_probe: bool,
           shape_only: bool = False) -> Complexity:
    errors: dict[str, str] = {}
    first = (_traced_pass(subject, probe.SEED, errors) if with_fvcore else None) or _plain_pass(subject, probe.SEED, errors)
    official, fvcore = first.official, first.fvcore
    ptflops: PtflopsCounts | None = None
    varies: dict[str, tuple[int, int]] = {}
    if not second_probe:
        if with_ptflops:
            ptflops = _plain_pass(subject, probe.SEED, errors, with_ptflops=True).ptflops
    elif shape_only and not with_ptflops and _proves_shape_only(subject, first):
        pass  # the same operations on the same shapes, reading no value: the second probe would find nothing
    else:
        second = _plain_pass(subject, probe.PHOTO_PROBE, errors, with_ptflops)
        if (second.official, second.trail) == (first.official, first.trail):
            ptflops = second.ptflops  # same operations on the same shapes: ptflops counts the first probe alike
        else:  # routed by the input, or traced differently: each counter on its own forward
            if first.traced or with_ptflops:
                again = _plain_pass(subject, probe.SEED, errors, with_ptflops)
                official, ptflops = again.official, again.ptflops
            varies = _changes(official, second.official)
            fvcore_second = _traced_pass(subject, probe.PHOTO_PROBE, {}) if fvcore is not None else None
            if fvcore is not None and fvcore_second is not None and fvcore_second.fvcore.macs != fvcore.macs:
                varies["flops_fvcore"] = (fvcore.macs, fvcore_second.fvcore.macs)
    return Complexity(
        params=official.params, flops_official=official.flops, activations=official.activations,
        num_conv=official.num_conv, flops_fvcore=None if fvcore is None else fvcore.macs,
        flops_ptflops=None if ptflops is None else ptflops.macs,
        fvcore_unsupported={} if fvcore is None else fvcore.unsupported_ops, errors=errors, varies=varies,
    )
