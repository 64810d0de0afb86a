"""The software environment an entry was measured in: Python, torch, the platform, and the packages the team's
file imports (with their versions) -- recorded in every results entry (``environment``), so that a round measured
from several environments (teams that need other packages: README, "Teams that need other packages") says which
team was measured where."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

import torch


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    try:
        return dict(importlib.metadata.packages_distributions())
    except Exception:  # noqa: BLE001 - broken metadata of some installed package: no versions, not a failure
        return {}


def package_versions(modules: list[str]) -> dict[str, str]:
    """``{distribution: version}`` of the top-level modules given (standard-library ones and unknown ones left out)."""
    versions: dict[str, str] = {}
    for module in sorted(set(modules)):
        if module in sys.stdlib_module_names or module in ("esrkit", "models"):
            continue
        for dist in _distributions().get(module, []):
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def team_imports(source: Path | None) -> list[str]:
    """The top-level modules a team's file imports (outside ``__main__`` blocks); none for the kit's own entries."""
    if source is None:
        return []
    from esrkit.teamfile import imports_in, parse

    return [name.split(".")[0] for name, _ in imports_in(parse(source)) if not name.startswith(".")]


def describe(source: Path | None = None) -> dict[str, Any]:
    """The environment of this process, with the versions of what ``source`` (a team's file) imports."""
    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "packages": package_versions(["torch", "numpy", *team_imports(source)])}


def label(environment: Any) -> str:
    """A short name for an ``environment`` record (or an older entry's bare torch version), for tables and notes."""
    if isinstance(environment, dict):
        return f"Python {environment.get('python', '?')}, torch {environment.get('torch', '?')}"
    return f"torch {environment}" if isinstance(environment, str) else "unknown environment"
