"""Where things are: the repository, its model zoo, and the shared third-party material.

The shared folder (official weights, benchmark sets, published tables, team submissions) is
``$ESRKIT_SHARED`` when set, else ``../shared`` beside the repository. Every module that needs it
asks here, so the environment variable is honoured everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_ZOO = REPO_ROOT / "model_zoo"
SHARED_ENV = "ESRKIT_SHARED"


def shared_dir() -> Path:
    """``$ESRKIT_SHARED``, or ``../shared`` beside the repository (read at every call)."""
    configured = os.environ.get(SHARED_ENV)
    return Path(configured).expanduser() if configured else REPO_ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path inside the shared folder, e.g. ``shared_path("data", "benchmarks", "Set5")``."""
    return shared_dir().joinpath(*parts)
