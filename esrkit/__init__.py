"""esrkit: the reference submission and benchmarking kit for efficient x4 image super-resolution.

The data flows one way: datasets -> entries (model + weights) -> evaluation loop (timing, tiling)
-> metrics -> results/report. Each module does one of those jobs.

As a library (:mod:`esrkit.api`; README "The kit as a library")::

    import esrkit
    counts = esrkit.count(model)                               # fvcore's habit: params, FLOPs, acts, #conv
    record = esrkit.evaluate(model, "Set5/", data_range=1.0)   # per-image PSNR and challenge runtimes
    entry = esrkit.get_entry("RFDN")                           # timm's habit: registered entries

The names below are imported on first use, so ``import esrkit`` stays light (the command lines guard
their own, slower, imports).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "count": "esrkit.api", "evaluate": "esrkit.api", "time_forward": "esrkit.api", "entry_from_spec": "esrkit.api",
    "load_entries": "esrkit.api",
    "get_entry": "esrkit.registry", "list_entries": "esrkit.registry", "register": "esrkit.registry",
    "Entry": "esrkit.entry", "TeamSpec": "esrkit.spec", "load_spec_file": "esrkit.spec",
    "Complexity": "esrkit.measure.complexity", "SplitRecord": "esrkit.evaluation", "ImageRecord": "esrkit.evaluation",
    "KitError": "esrkit.errors",
}
__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'esrkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
