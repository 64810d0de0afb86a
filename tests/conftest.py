"""Shared fixtures: paths to ../shared (the third-party data the tests read, never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ESRKIT_SHARED", REPO_ROOT.parent / "shared"))
BENCHMARKS = SHARED / "data" / "benchmarks"
OFFICIAL_WEIGHTS = SHARED / "weights"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not available (set ESRKIT_SHARED to the shared folder)")
    return path


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    return require(BENCHMARKS)


@pytest.fixture(scope="session")
def official_weights_dir() -> Path:
    return require(OFFICIAL_WEIGHTS)
