"""Shared fixtures: paths to ../shared (the third-party data the tests read, never copied here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from esrkit.device import torch_threads
from esrkit.paths import shared_dir

__all__ = ["torch_threads"]  # tests run networks on one thread: steady on two shared cores, where two are not

SHARED = shared_dir()
BENCHMARKS = SHARED / "data" / "benchmarks"
OFFICIAL_WEIGHTS = SHARED / "weights"


@pytest.fixture(autouse=True)
def not_a_slurm_array_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A suite run inside a Slurm array job must not make every batch of the tests a shard of it."""
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"):
        monkeypatch.delenv(name, raising=False)


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


def copy_benchmark(root: Path, source: Path, names: tuple[str, ...]) -> Path:
    """A benchmark-layout copy (HR/ + LR_bicubic/X4/) of some images of the benchmark set ``source``."""
    import shutil

    for sub, suffix in (("HR", ""), ("LR_bicubic/X4", "x4")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(source / sub / f"{name}{suffix}.png", root / sub / f"{name}{suffix}.png")
    return root


@pytest.fixture()
def two_image_benchmark(tmp_path: Path, benchmarks_dir: Path) -> Path:
    """A benchmark-layout copy of two Set5 images (img_002, img_005), to damage freely."""
    return copy_benchmark(tmp_path / "Set5mini", benchmarks_dir / "Set5", ("img_002", "img_005"))
