"""The README's library example runs as written (from the repository root, with ../shared), and the API gives the
same numbers as the command lines: they call it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import esrkit
from esrkit.paths import REPO_ROOT
from tests.conftest import SHARED, require, torch_threads


def readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The kit as a library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_library_example_runs_as_written(monkeypatch, tmp_path) -> None:
    """Run from a folder beside which ``../shared`` is the shared folder, as it is beside a checkout."""
    require(SHARED / "submissions")
    (tmp_path / "shared").symlink_to(SHARED.resolve())
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    out = io.StringIO()
    with torch_threads(1), contextlib.redirect_stdout(out):
        exec(compile(readme_example(), "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    # MLRN-entire's Table 3 row (274,710 params, 16.85 G, 97.87 M, 43) and NanoSR's published 550,992 params
    assert lines[0].startswith("274,710 params, 16.85 G FLOPs (hook counter, 2022-23), 16.88 G (fvcore, 2024-25), "
                               "97.87 M acts, 43 convs, input-dependent: no"), lines[0]
    assert lines[1].startswith("Set5 PSNR ") and lines[1].count("img_00") == 5
    assert lines[-1] == "07_NanoSR 550992"


def test_public_names_are_importable_and_lazy() -> None:
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, esrkit; print('torch' in sys.modules)"],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert loaded.stdout.strip() == "False"  # import esrkit stays light: the commands guard their own imports
    for name in esrkit.__all__:
        assert getattr(esrkit, name) is not None, name


def test_the_command_line_and_the_api_count_alike(tmp_path: Path, two_image_benchmark: Path) -> None:
    """test_demo.py's entry counts and PSNR are the API's, to the last digit (same machine, same threads)."""
    import json

    import test_demo

    with torch_threads(1):
        assert test_demo.main(["--data_dir", str(two_image_benchmark), "--results_dir", str(tmp_path), "--no_save",
                               "--runs", "0", "--quiet"]) == 0
        model = esrkit.get_entry("MLRN-entire").load().model
        counts = esrkit.count(model)
        record = esrkit.evaluate(model, two_image_benchmark, data_range=255)
    entry = json.loads((tmp_path / "results.json").read_text())["10_MLRN-entire"]
    assert entry["num_parameters"] * 1e6 == pytest.approx(counts.params, abs=1e-3)
    assert entry["flops_hook"] * 1e9 == pytest.approx(counts.flops_official, abs=1)
    assert entry["activations"] * 1e6 == pytest.approx(counts.activations, abs=1e-3)
    assert entry["valid_psnr"] == record.metric("psnr")
