"""The kit as a library: the challenge's numbers for a model object, from a training script or a notebook.

    import esrkit

    counts = esrkit.count(model)                          # params, FLOPs (both counters), activations, #conv
    record = esrkit.evaluate(model, "Set5/", data_range=1.0)   # per-image PSNR (and SSIM), challenge runtimes
    timing = esrkit.time_forward(model, lr_size=(339, 510))    # the challenge protocol on one input size
    entry = esrkit.entry_from_spec(model_file="models/team07_NanoSR.py", class_name="NanoSR_inference",
                                   init_args=[3, 3], data_range=1.0)

These are the functions the command lines run (``test_demo.py``, ``python -m benchmarks``, ``submission
check/batch``): the same counters (:mod:`esrkit.measure.complexity`), the same evaluation loop
(:mod:`esrkit.evaluation`), the same timing (:mod:`esrkit.measure.timing`) and the same spec resolution
(:mod:`esrkit.spec`) -- no second implementation. A model handed in is measured as the organisers
measure it (eval mode, no parameter requiring grad, on the device) and handed back as it came: its
training flag, ``requires_grad`` flags and device are restored.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from esrkit.datasets import Split, open_split
from esrkit.device import pick_device, prepare_model
from esrkit.entry import Entry
from esrkit.errors import KitError
from esrkit.evaluation import Evaluator, SplitRecord
from esrkit.measure import complexity, probe, timing
from esrkit.measure.complexity import Complexity
from esrkit.metrics import selected
from esrkit.spec import TeamSpec, resolve

__all__ = ["count", "evaluate", "time_forward", "entry_from_spec", "Complexity", "SplitRecord"]


def count(model: nn.Module, *, fvcore: bool = True, ptflops: bool = False, second_probe: bool = True) -> Complexity:
    """Every count of ``model`` as the challenge defines it, on the 3x256x256 probe (``torch.rand`` seeded 0):
    ``params``, ``flops_official`` (the kits' hook counter: the 2022-2023 FLOPs), ``flops_fvcore`` (2024-2025),
    ``activations``, ``num_conv``; ``flops(counter)`` picks one, ``varies`` says which counts depend on the input
    (counted again on a second probe). Count the model as deployed: weights loaded, re-parameterised."""
    counters = ("official",) + (("fvcore",) if fvcore else ()) + (("ptflops",) if ptflops else ())
    return complexity.count(model, counters=counters, second_probe=second_probe)


@contextlib.contextmanager
def _as_organisers_run_it(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` prepared as the official kits prepare it, then restored (training flag, grads, device)."""
    training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    param = next(model.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    try:
        yield prepare_model(model, device)
    finally:
        model.to(home).train(training)
        for p, flag in zip(model.parameters(), grads):
            p.requires_grad_(flag)


def _split_of(data: str | Path | Split, split: str, layout: str, scale: int) -> Split:
    return data if isinstance(data, Split) else open_split(data, split, layout, scale)


def evaluate(model: nn.Module | Entry | str, data: str | Path | Split, *, data_range: float | None = None,
             scale: int = 4, split: str = "valid", layout: str = "auto", device: str | torch.device = "auto",
             ssim: bool = False, save_dir: str | Path | None = None, weights: str | Path | None = None) -> SplitRecord:
    """Run ``model`` over one split of ``data`` (an official layout, a benchmark set, or a folder of HR images)
    under the challenge protocol; the :class:`~esrkit.evaluation.SplitRecord` holds per image its name, runtime
    and metrics (``record.mean("psnr")``, ``record.images[i].metrics``).

    ``model`` is an ``nn.Module`` (then ``data_range`` is required: 1.0 or 255, what white is at its input and
    output), a registered entry's name, or an :class:`~esrkit.entry.Entry` (loaded with ``weights`` or its own).
    ``save_dir``: also write the SR PNGs there.
    """
    if isinstance(model, (str, Entry)):
        entry = model if isinstance(model, Entry) else resolve(TeamSpec(entry=model))
        with entry.running_on(pick_device(device) if isinstance(device, str) else device):
            loaded = entry.load(None if weights is None else Path(weights)).model
        return evaluate(loaded, data, data_range=entry.data_range, scale=entry.scale, split=split, layout=layout,
                        device=device, ssim=ssim, save_dir=save_dir)
    if data_range is None:
        raise KitError("evaluate(model, ...) needs data_range=1.0 or 255: what white is at the model's input and output")
    target = pick_device(device) if isinstance(device, str) else device
    images = _split_of(data, split, layout, scale)
    with _as_organisers_run_it(model, target) as prepared:
        evaluator = Evaluator(prepared, scale=scale, data_range=data_range, device=target, metrics=selected(ssim=ssim),
                              source=type(model).__name__)
        return evaluator.run(images, None if save_dir is None else Path(save_dir))


def time_forward(model: nn.Module, lr_size: tuple[int, int] = (339, 510), *, runs: int = 5, data_range: float = 1.0,
                 device: str | torch.device = "auto") -> timing.Summary:
    """The challenge protocol on one LR size (H, W; 339x510 is a DIV2K LR): ``runs`` back-to-back forwards of a
    random image made into a tensor as the challenge loop makes one, no warm-up, CUDA events on a GPU (the wall
    clock elsewhere). ``summary.mean`` is the challenge figure, ``summary.first`` the cold first call,
    ``summary.median`` the steady state."""
    if runs < 1:
        raise KitError(f"runs={runs}: time at least one forward")
    target = pick_device(device) if isinstance(device, str) else device
    x = probe.random_lr(*lr_size, data_range, target)
    with _as_organisers_run_it(model, target) as prepared:
        return timing.Summary.of(timing.repeat(lambda: prepared(x), target, runs))


def entry_from_spec(spec: TeamSpec | None = None, **facts: Any) -> Entry:
    """A team's entry from its instructions: a :class:`~esrkit.spec.TeamSpec`, or its facts as keywords
    (``model_file``, ``class_name``, ``init_args``, ``init_kwargs``, ``weights``, ``state_key``, ``strict``,
    ``data_range``, ``post_load``, ``load_method``, ``team``, ``name``; or ``entry="RFDN"`` for a registered one).
    Paths may be
    strings. ``entry.load().model`` is the network as the organisers build it."""
    if spec is None:
        values = dict(facts)
        for key in ("model_file", "weights"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if "init_args" in values and values["init_args"] is not None:
            values["init_args"] = tuple(values["init_args"])
        try:
            spec = TeamSpec(**values)
        except TypeError as exc:
            raise KitError(f"entry_from_spec: {exc} (the facts are those of a [[team]] table)") from None
    return resolve(spec)


def load_entries(names: Sequence[str]) -> list[Entry]:
    """Registered entries by name or id, in order (``esrkit.list_entries()`` lists them)."""
    return [resolve(TeamSpec(entry=name)) for name in names]
