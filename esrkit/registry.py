"""Registry of entries: a model architecture plus everything needed to run it as a challenge entry.

Architectures live one per file in ``models/``; each file registers its entries with
:func:`register_entry` on a small builder function (as timm does). ``models/__init__.py`` imports
those files explicitly, so an entry is never "discovered" from a filename.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

from esrkit.checkpoint import load_weights
from esrkit.errors import KitError

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_ZOO = REPO_ROOT / "model_zoo"

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Entry:
    """A registered challenge entry.

    ``data_range`` is the value that white maps to at the model's input and output (255 or 1.0);
    getting it wrong is the most common reason an entry scores far below its real quality.
    ``checkpoint_filter`` maps a foreign checkpoint's keys onto this implementation's keys.
    """

    name: str
    model_id: int
    builder: Callable[[], nn.Module] = field(repr=False)
    scale: int
    data_range: float
    weights: str | None
    tile: int | None = None
    tile_overlap: int = 32
    checkpoint_filter: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = field(
        default=None, repr=False
    )
    description: str = ""

    @property
    def key(self) -> str:
        """The results.json key, as the official kits write it: ``f"{id:02}_{name}"``."""
        return f"{self.model_id:02}_{self.name}"

    def default_weights_path(self, model_zoo: Path = MODEL_ZOO) -> Path | None:
        return None if self.weights is None else model_zoo / self.weights

    def build(self) -> nn.Module:
        """A fresh, untrained model in eval mode."""
        return self.builder().eval()

    def has_default_weights(self, model_zoo: Path = MODEL_ZOO) -> bool:
        path = self.default_weights_path(model_zoo)
        return path is not None and path.is_file()

    def load(self, weights: Path | None = None, model_zoo: Path = MODEL_ZOO) -> tuple[nn.Module, Path]:
        """The model with ``weights`` (default: its file in ``model_zoo``) loaded strictly, and that path."""
        path = weights if weights is not None else self.default_weights_path(model_zoo)
        if path is None:
            raise KitError(f"entry {self.name} has no default weights file: pass --weights PATH")
        if not path.is_file():
            hint = "check --weights" if weights is not None else "put the file there or pass --weights PATH"
            raise KitError(f"weights for {self.name} not found: expected {path}; {hint}")
        return load_weights(self.build(), path, self.checkpoint_filter), path


_ENTRIES: dict[str, Entry] = {}
_BY_ID: dict[int, Entry] = {}
_MODELS_IMPORTED = False
_COLLECTOR: list[Entry] | None = None  # set by collecting(): registrations go there instead

DEFAULT_ENTRY = "MLRN-entire"


def register_entry(
    name: str,
    model_id: int,
    *,
    scale: int,
    data_range: float,
    weights: str | None,
    tile: int | None = None,
    tile_overlap: int = 32,
    checkpoint_filter: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    description: str = "",
) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator that registers a model builder as an entry."""

    def decorator(builder: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        entry = Entry(
            name=name,
            model_id=model_id,
            builder=builder,
            scale=scale,
            data_range=data_range,
            weights=weights,
            tile=tile,
            tile_overlap=tile_overlap,
            checkpoint_filter=checkpoint_filter,
            description=description,
        )
        if _COLLECTOR is not None:
            _COLLECTOR.append(entry)
            return builder
        lowered = name.lower()
        if lowered in _ENTRIES:
            raise ValueError(f"entry name {name!r} is registered twice")
        if model_id in _BY_ID:
            raise ValueError(f"model id {model_id} is used by both {_BY_ID[model_id].name!r} and {name!r}")
        _ENTRIES[lowered] = entry
        _BY_ID[model_id] = entry
        return builder

    return decorator


@contextlib.contextmanager
def collecting() -> Iterator[list[Entry]]:
    """While active, :func:`register_entry` collects entries into the yielded list instead of the registry.

    Used to import a team's model file without letting its entry clash with (or replace) the kit's own.
    The kit's entries are imported first, so only what is imported inside the block is collected.
    """
    global _COLLECTOR
    _import_models()
    previous, _COLLECTOR = _COLLECTOR, []
    try:
        yield _COLLECTOR
    finally:
        _COLLECTOR = previous


def _import_models() -> None:
    global _MODELS_IMPORTED
    if not _MODELS_IMPORTED:
        importlib.import_module("models")
        _MODELS_IMPORTED = True


def list_entries() -> list[Entry]:
    """All registered entries, ordered by model id."""
    _import_models()
    return [_BY_ID[i] for i in sorted(_BY_ID)]


def get_entry(name_or_id: str | int) -> Entry:
    """Look an entry up by name (case-insensitive) or by numeric id ("0", 0, "10")."""
    _import_models()
    if isinstance(name_or_id, int) or str(name_or_id).strip().isdigit():
        model_id = int(name_or_id)
        if model_id in _BY_ID:
            return _BY_ID[model_id]
    else:
        entry = _ENTRIES.get(str(name_or_id).strip().lower())
        if entry is not None:
            return entry
    names = [e.name for e in list_entries()]
    close = difflib.get_close_matches(str(name_or_id), names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    table = ", ".join(f"{e.model_id}={e.name}" for e in list_entries())
    raise KitError(f"unknown entry {name_or_id!r}.{hint} Registered entries (id=name): {table}")
