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
training flag, ``requires_grad`` flags and device are restored. A wrong argument (its type or value) is one
:class:`~esrkit.errors.KitError` naming it and what it must be (:mod:`esrkit.arguments`).
"""

from __future__ import annotations

import contextlib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from esrkit import arguments
from esrkit.datasets import Split, open_split
from esrkit.device import pick_device, prepare_model
from esrkit.entry import Entry
from esrkit.errors import KitError
from esrkit.evaluation import Evaluator, SplitRecord
from esrkit.measure import complexity, probe, timing
from esrkit.measure.complexity import Complexity
from esrkit.metrics import selected
from esrkit.registry import get_entry
from esrkit.spec import TeamSpec, resolve, spec_from_keywords

__all__ = ["count", "evaluate", "time_forward", "entry_from_spec", "Complexity", "SplitRecord"]


def count(model: nn.Module, *, fvcore: bool = True, ptflops: bool = False, second_probe: bool = True) -> Complexity:
    """Every count of ``model`` as the challenge defines it, on the 3x256x256 probe (``torch.rand`` seeded 0):
    ``params``, ``flops_official`` (the kits' hook counter: the 2022-2023 FLOPs), ``flops_fvcore`` (2024-2025),
    ``activations``, ``num_conv``; ``flops(counter)`` picks one, ``varies`` says which counts depend on the input
    (counted again on a second probe). Count the model as deployed: weights loaded, re-parameterised."""
    arguments.module("count", model)
    for name, value in (("fvcore", fvcore), ("ptflops", ptflops), ("second_probe", second_probe)):
        arguments.flag("count", name, value)
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
    if isinstance(data, Split):
        return data
    folder = arguments.path("evaluate", "data", data, f"a data folder ({arguments.PATH}) or an esrkit.datasets.Split")
    return open_split(folder, arguments.text("evaluate", "split", split), arguments.text("evaluate", "layout", layout),
                      scale)


def _device(function: str, device: str | torch.device) -> torch.device:
    return pick_device(arguments.device(function, device))


def evaluate(model: nn.Module | Entry | str, data: str | Path | Split, *, data_range: float | None = None,
             scale: int | None = None, split: str = "valid", layout: str = "auto", device: str | torch.device = "auto",
             ssim: bool = False, save_dir: str | Path | None = None, weights: str | Path | None = None) -> SplitRecord:
    """Run ``model`` over one split of ``data`` (an official layout, a benchmark set, or a folder of HR images)
    under the challenge protocol; the :class:`~esrkit.evaluation.SplitRecord` holds per image its name, runtime
    and metrics (``record.mean("psnr")``, ``record.images[i].metrics``).

    ``model`` is an ``nn.Module`` (then ``data_range`` is required: 1.0 or 255, what white is at its input and
    output; ``scale`` defaults to 4), a registered entry's name, or an :class:`~esrkit.entry.Entry` (loaded with
    ``weights`` or its own; its data range and scale are its own). ``save_dir``: also write the SR PNGs there.
    """
    arguments.flag("evaluate", "ssim", ssim)
    out = arguments.optional_path("evaluate", "save_dir", save_dir, f"a folder ({arguments.PATH})")
    if isinstance(model, (str, Entry)):
        entry = model if isinstance(model, Entry) else resolve(TeamSpec(entry=model))
        for name, given, own in (("data_range", data_range, entry.data_range), ("scale", scale, entry.scale)):
            if given is not None and given != own:
                raise arguments.wrong("evaluate", name, f"left out for entry {entry.name} (its own is {own:g})", given)
        path = arguments.optional_path("evaluate", "weights", weights, f"a weights file ({arguments.PATH})")
        with entry.running_on(_device("evaluate", device)):
            loaded = entry.load(path).model
        return evaluate(loaded, data, data_range=entry.data_range, scale=entry.scale, split=split, layout=layout,
                        device=device, ssim=ssim, save_dir=save_dir)
    arguments.module("evaluate", model, f"{arguments.MODULE}, a registered entry's name or an esrkit.Entry")
    if weights is not None:
        raise arguments.wrong("evaluate", "weights", "left out for an nn.Module (it is for an entry given by name or "
                                                     "as an esrkit.Entry: load the module's weights first)", weights)
    if data_range is None:
        raise KitError("evaluate(model, ...) needs data_range=1.0 or 255: what white is at the model's input and output")
    data_range = arguments.data_range("evaluate", data_range)
    scale = 4 if scale is None else arguments.positive_int("evaluate", "scale", scale)
    target = _device("evaluate", device)
    images = _split_of(data, split, layout, scale)
    with _as_organisers_run_it(model, target) as prepared:
        evaluator = Evaluator(prepared, scale=scale, data_range=data_range, device=target, metrics=selected(ssim=ssim),
                              source=type(model).__name__)
        return evaluator.run(images, out)


def time_forward(model: nn.Module, lr_size: tuple[int, int] = (339, 510), *, runs: int = 5, data_range: float = 1.0,
                 device: str | torch.device = "auto") -> timing.Summary:
    """The challenge protocol on one LR size (H, W; 339x510 is a DIV2K LR): ``runs`` back-to-back forwards of a
    random image made into a tensor as the challenge loop makes one, no warm-up, CUDA events on a GPU (the wall
    clock elsewhere). ``summary.mean`` is the challenge figure, ``summary.first`` the cold first call,
    ``summary.median`` the steady state."""
    arguments.module("time_forward", model)
    if not (isinstance(lr_size, (tuple, list)) and len(lr_size) == 2 and all(
            arguments.is_integer(n) and n > 0 for n in lr_size)):
        raise arguments.wrong("time_forward", "lr_size", "a pair of positive integers (height, width), e.g. (339, 510)",
                              lr_size)
    runs = arguments.positive_int("time_forward", "runs", runs)
    data_range = arguments.data_range("time_forward", data_range)
    target = _device("time_forward", device)
    x = probe.random_lr(*lr_size, data_range, target)
    with _as_organisers_run_it(model, target) as prepared:
        return timing.Summary.of(timing.repeat(lambda: prepared(x), target, runs))


def entry_from_spec(spec: TeamSpec | None = None, **facts: Any) -> Entry:
    """A team's entry from its instructions: a :class:`~esrkit.spec.TeamSpec`, or its facts as keywords
    (``model_file``, ``class_name``, ``init_args``, ``init_kwargs``, ``weights``, ``state_key``, ``strict``,
    ``data_range``, ``post_load``, ``load_method``, ``team``, ``name``, ``scale``; or ``entry="RFDN"`` for a
    registered one), each checked as a spec file's [[team]] table is. Paths may be strings.
    ``entry.load().model`` is the network as the organisers build it."""
    if spec is None:
        return resolve(spec_from_keywords(facts, "esrkit.entry_from_spec"))
    if not isinstance(spec, TeamSpec):
        raise arguments.wrong("entry_from_spec", "spec", "an esrkit.TeamSpec (or give its facts as keywords)", spec)
    if facts:
        raise KitError(f"esrkit.entry_from_spec: give a TeamSpec or its facts as keywords, not both (the keywords "
                       f"{', '.join(sorted(facts))} would be ignored): use dataclasses.replace(spec, ...)")
    provenance = ("in_file", "from_folder")  # where the facts came from (how messages name them), not facts
    told = {f.name: getattr(spec, f.name) for f in fields(TeamSpec) if f.name not in provenance}
    return resolve(replace(spec_from_keywords(told, "esrkit.entry_from_spec"),
                           **{name: getattr(spec, name) for name in provenance}))


def load_entries(names: Sequence[str | int]) -> list[Entry]:
    """Registered entries by name or id, in order (``esrkit.list_entries()`` lists them)."""
    if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)):
        raise arguments.wrong("load_entries", "names", "a list of entry names or ids, e.g. ['RFDN', 'MLRN-entire']",
                              names)
    return [get_entry(name) for name in names]
