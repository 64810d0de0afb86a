"""The registry of entries (timm's pattern): ``models/`` files register :class:`~esrkit.entry.Entry` objects.

Architectures live one per file in ``models/``; each file registers its entries explicitly with
:func:`register` (an :class:`Entry`: class, constructor arguments, scale, data range, default
weights). Importing ``models`` imports every file there (team submissions excepted), so adding an
entry is adding one file. :func:`register_entry` is the same as a decorator, for a team's file that
registers its own network.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
from typing import Any, Callable, Iterator, TypeVar

from torch import nn

from esrkit import arguments
from esrkit.entry import Entry
from esrkit.errors import KitError

DEFAULT_ENTRY = "MLRN-entire"

_ENTRIES: dict[str, Entry] = {}
_BY_ID: dict[int, Entry] = {}
_MODELS_IMPORTED = False
_COLLECTOR: list[Entry] | None = None  # set by collecting(): registrations go there instead

Arch = TypeVar("Arch", bound=Callable[..., nn.Module])


def register(entry: Entry) -> Entry:
    """Add ``entry`` to the registry (or to the list of :func:`collecting`); names and ids are unique."""
    if not isinstance(entry, Entry):
        raise arguments.wrong("register", "entry", "an esrkit.Entry(name=..., arch=..., scale=..., data_range=..., "
                                                   "model_id=...)", entry)
    if _COLLECTOR is not None:
        _COLLECTOR.append(entry)
        return entry
    lowered = entry.name.lower()
    if lowered in _ENTRIES:
        raise KitError(f"esrkit.register: entry name {entry.name!r} is registered twice: give it another name")
    if not arguments.is_integer(entry.model_id):
        raise KitError(f"esrkit.register: entry {entry.name!r} needs an integer model_id to be registered, got "
                       f"{arguments.shown(entry.model_id)}")
    if entry.model_id in _BY_ID:
        raise KitError(f"esrkit.register: model id {entry.model_id} is used by both {_BY_ID[entry.model_id].name!r} "
                       f"and {entry.name!r}: give it a free id ({max(_BY_ID) + 1} is)")
    _ENTRIES[lowered] = entry
    _BY_ID[entry.model_id] = entry
    return entry


def register_entry(name: str, model_id: int, **config: Any) -> Callable[[Arch], Arch]:
    """Decorator form of :func:`register` on a class (or a function that builds the network with no arguments)."""

    def decorator(arch: Arch) -> Arch:
        register(Entry(name=name, arch=arch, model_id=model_id, **config))
        return arch

    return decorator


@contextlib.contextmanager
def collecting() -> Iterator[list[Entry]]:
    """While active, registrations are collected into the yielded list instead of the registry.

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
    if not (isinstance(name_or_id, str) or arguments.is_integer(name_or_id)):
        raise arguments.wrong("get_entry", "name_or_id", "an entry's name (a str) or id (an int)", name_or_id)
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
