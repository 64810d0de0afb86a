"""What a check or a package run works on: a registered entry, or a team's model file imported by path.

A model file either registers one entry with :func:`esrkit.registry.register_entry` (it then
declares its scale, data range and weights itself) or defines the network as an ``nn.Module``
subclass that builds with no arguments (``--scale`` and ``--data_range`` then say the rest).
Importing the file never adds its entry to the kit's registry: registrations are collected aside.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch
from torch import nn

from esrkit import registry
from esrkit.checkpoint import load_weights
from esrkit.errors import KitError
from esrkit.registry import Entry, get_entry
from esrkit.submission.layout import find_weights, model_name_from_file

DEFAULT_SCALE = 4
_import_counter = itertools.count()

CheckpointFilter = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
Builder = Callable[[], nn.Module]


@dataclass(frozen=True)
class Candidate:
    """A model to check or package. ``build`` is None when the file gave no model (``problem`` says why);
    ``data_range`` is None when nothing declared it."""

    name: str
    source_file: Path
    weights: Path | None
    scale: int
    data_range: float | None
    build: Callable[[], nn.Module] | None
    described_as: str
    checkpoint_filter: CheckpointFilter | None = None
    tile: int | None = None
    tile_overlap: int = 32
    problem: str | None = None

    def load_model(self) -> nn.Module:
        """A fresh model in eval mode with the weights loaded strictly (``weights_only=True``)."""
        if self.build is None:
            raise KitError(self.problem or f"{self.source_file} gave no model")
        if self.weights is None:
            raise KitError(f"no weights file for {self.name}: pass --weights PATH")
        return load_weights(self.build().eval(), self.weights, self.checkpoint_filter)


def _with_declared(entry: Entry, scale: int | None, data_range: float | None) -> None:
    """Refuse ``--scale`` / ``--data_range`` values that contradict what the entry declares."""
    for flag, given, declared in (("--scale", scale, entry.scale), ("--data_range", data_range, entry.data_range)):
        if given is not None and float(given) != float(declared):
            raise KitError(
                f"entry {entry.name} declares {flag[2:]} {declared:g} but {flag} {given:g} was given: "
                f"drop {flag} (it is only for model files without register_entry) or fix the entry"
            )


def from_entry(
    name_or_id: str, weights: Path | None, scale: int | None = None, data_range: float | None = None
) -> Candidate:
    """A registered entry; its weights are ``weights`` or its own file in the kit's ``model_zoo/``."""
    entry = get_entry(name_or_id)
    _with_declared(entry, scale, data_range)
    source = Path(inspect.getsourcefile(entry.builder) or "?")
    return _candidate_from(entry, source, weights if weights is not None else entry.default_weights_path(),
                           f"registered entry {entry.name} (id {entry.model_id})")


def _candidate_from(entry: Entry, source: Path, weights: Path | None, described_as: str) -> Candidate:
    return Candidate(
        name=entry.name, source_file=source, weights=weights, scale=entry.scale, data_range=entry.data_range,
        build=entry.build, described_as=described_as, checkpoint_filter=entry.checkpoint_filter,
        tile=entry.tile, tile_overlap=entry.tile_overlap,
    )


def import_model_file(path: Path) -> tuple[ModuleType, list[Entry]]:
    """Import ``path`` under a private module name; return it and the entries it registered."""
    module_name = f"_esrkit_submission_{path.stem}_{next(_import_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise KitError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    with registry.collecting() as collected:
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the file is user code: any error is reported, none is hidden
            sys.modules.pop(module_name, None)
            raise KitError(f"importing {path.name} failed: {type(exc).__name__}: {_first_line(exc)}") from None
    return module, [e for e in collected if e.builder.__module__ == module_name]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _builds_without_arguments(cls: type) -> bool:
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def _module_class(module: ModuleType, path: Path) -> type[nn.Module]:
    """The one ``nn.Module`` subclass of the file that builds with no arguments (ties: the one named like the file)."""
    defined = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
    ]
    buildable = [c for c in defined if _builds_without_arguments(c)]
    if len(buildable) == 1:
        return buildable[0]
    wanted = (model_name_from_file(path) or "").lower()
    named = [c for c in buildable if c.__name__.lower() == wanted]
    if len(named) == 1:
        return named[0]
    if not buildable:
        listed = ", ".join(c.__name__ for c in defined) or "none"
        raise KitError(
            f"{path.name} neither registers an entry nor defines an nn.Module subclass that builds with no "
            f"arguments (classes found: {listed}): give the network's __init__ default arguments or use register_entry"
        )
    raise KitError(
        f"{path.name} defines {len(buildable)} nn.Module subclasses that build with no arguments "
        f"({', '.join(c.__name__ for c in buildable)}) and none is named like the file: "
        f"name the network class {model_name_from_file(path) or 'after the file'} or use register_entry"
    )


def from_model_file(
    path: Path, weights: Path | None, scale: int | None = None, data_range: float | None = None
) -> Candidate:
    """A team's model file; a file that cannot give a model still yields a candidate whose ``problem`` says why."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"model file not found: {path}")
    default_weights = weights if weights is not None else find_weights(path)
    try:
        module, entries = import_model_file(path)
        if len(entries) > 1:
            raise KitError(
                f"{path.name} registers {len(entries)} entries ({', '.join(e.name for e in entries)}); "
                f"a submission file holds exactly one model"
            )
        cls = None if entries else _module_class(module, path)
    except KitError as exc:
        return Candidate(
            name=path.stem, source_file=path, weights=default_weights, scale=scale or DEFAULT_SCALE,
            data_range=data_range, build=None, described_as=f"model file {path.name}", problem=str(exc),
        )
    if cls is None:
        entry = entries[0]
        _with_declared(entry, scale, data_range)
        declared = entry.default_weights_path(path.parent.parent / "model_zoo")
        if weights is None and declared is not None and declared.is_file():
            default_weights = declared
        return _candidate_from(entry, path, default_weights, f"entry {entry.name} registered by {path.name}")
    return Candidate(
        name=cls.__name__, source_file=path, weights=default_weights, scale=scale or DEFAULT_SCALE,
        data_range=data_range, build=cls, described_as=f"{cls.__name__}() from {path.name}",
    )
