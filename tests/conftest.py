"""Shared fixtures: paths to ../shared (the third-party data the tests read, never copied here).

The suite runs on every core (pytest-xdist, ``-n auto`` in pytest.ini), so each test process -- and every process it
starts -- computes with one thread (``OMP_NUM_THREADS=1`` unless set), as ``torch_threads(1)`` does in the tests:
two threads per process would only contend for the same cores. Figures that depend on the thread count are compared
between runs with the same count, or within the tolerance that says so.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before torch is imported, here and in every child
    os.environ.setdefault(_variable, "1")

import torch._dynamo  # noqa: E402,F401 - a test session is a long-lived process: counts take the shape-only run
#   where it proves the second probe would find nothing (esrkit.measure.complexity.shape_only_is_cheap); the team
#   processes the tests start are fresh ones, which take the second probe's forward
from pathlib import Path

import pytest

from esrkit.device import torch_threads
from esrkit.paths import shared_dir
from esrkit.sandbox import Sandbox, SandboxUnavailable

__all__ = ["torch_threads"]  # tests run networks on one thread: steady on two shared cores, where two are not

SHARED = shared_dir()

# The files that take longest (``pytest --durations=0`` on two cores), scheduled first and longest first: xdist gives
# each worker one file at a time (``--dist loadfile``), so a long file started last would leave the other worker
# idle at the end. pytest.ini turns off xdist's own order (by number of tests), which put the one-test Slurm file last.
LONGEST_FIRST = ("test_readme_commands.py", "test_intake.py", "test_batch_parallel.py", "test_slurm.py",
                 "test_submission.py", "test_train.py", "test_benchmarks_cli.py", "test_round.py",
                 "test_confinement.py", "test_results_page_browser.py", "test_verify.py", "test_demo_safety.py",
                 "test_scoring_program.py", "test_vs_official.py", "test_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of LONGEST_FIRST first, in its order; the others after them, as collected (a stable sort keeps
    each file's tests together and in order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _sandbox_problem() -> str:
    try:
        Sandbox.find()
    except SandboxUnavailable as exc:
        return str(exc)
    return ""


NO_SANDBOX = _sandbox_problem()
# For the tests that run team code confined (the default of batch, check, verify): where bubblewrap cannot run, they
# skip and say why (.ci/run installs it when it runs as root).
confined = pytest.mark.skipif(bool(NO_SANDBOX), reason=f"no sandbox here: {NO_SANDBOX}")
BENCHMARKS = SHARED / "data" / "benchmarks"
OFFICIAL_WEIGHTS = SHARED / "weights"


@pytest.fixture(autouse=True)
def not_a_slurm_array_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """A suite run inside a Slurm array job must not make every batch of the tests a shard of it."""
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"):
        monkeypatch.delenv(name, raising=False)


TOY_NET = '''import torch
from torch import nn


class Toy(nn.Module):
    """A 3 -> 48 channel conv and a x4 pixel shuffle: the smallest x4 network a test can run."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 48, 3, padding=1)
        self.up = nn.PixelShuffle(4)

    def forward(self, x):
        return self.up(self.conv(x))
'''


def toy_team(folder: Path, file_name: str, source: str = TOY_NET) -> Path:
    """``folder/models/<file_name>`` holding ``source`` and ``folder/model_zoo/<stem>.pth`` holding the weights of
    :data:`TOY_NET` (seeded): a team submission written by the test. ``source`` may be the toy with additions (an
    exit at import, in the forward) as long as it keeps the toy's parameters."""
    import torch

    path = folder / "models" / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    (folder / "model_zoo").mkdir(exist_ok=True)
    namespace: dict = {}
    exec(TOY_NET, namespace)
    torch.manual_seed(0)
    torch.save(namespace["Toy"]().state_dict(), folder / "model_zoo" / f"{path.stem}.pth")
    return path


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
