"""The README's library example runs as written (from the repository root, with ../shared), and the API gives the
same numbers as the command lines: they call it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Callable

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


def wrong_calls(tmp_path: Path) -> list[tuple[str, Callable[[], object], str]]:
    """Calls with one argument of the wrong type or value; the start of the one line each must raise."""
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.PixelShuffle(4))
    data = str(tmp_path)  # never read: every check comes before the data
    team = str(tmp_path / "team01_Net.py")
    return [
        ("count(None)", lambda: esrkit.count(None), "esrkit.count: model must be a torch.nn.Module"),
        ("count(name)", lambda: esrkit.count("RFDN"), "esrkit.count: model must be a torch.nn.Module"),
        ("count(fvcore='no')", lambda: esrkit.count(net, fvcore="no"), "esrkit.count: fvcore must be True or False"),
        ("time_forward(lr_size=64)", lambda: esrkit.time_forward(net, lr_size=64),
         "esrkit.time_forward: lr_size must be a pair of positive integers (height, width), e.g. (339, 510), got 64"),
        ("time_forward(lr_size=(0, 64))", lambda: esrkit.time_forward(net, lr_size=(0, 64)),
         "esrkit.time_forward: lr_size must be a pair of positive integers"),
        ("time_forward(runs=2.5)", lambda: esrkit.time_forward(net, runs=2.5),
         "esrkit.time_forward: runs must be a positive integer, got 2.5"),
        ("time_forward(data_range=0)", lambda: esrkit.time_forward(net, data_range=0),
         "esrkit.time_forward: data_range must be a positive number"),
        ("time_forward(device=0)", lambda: esrkit.time_forward(net, device=0), "esrkit.time_forward: device must be"),
        ("evaluate(data_range=0)", lambda: esrkit.evaluate(net, data, data_range=0),
         "esrkit.evaluate: data_range must be a positive number: 1.0 or 255"),
        ("evaluate(data_range=-1)", lambda: esrkit.evaluate(net, data, data_range=-1),
         "esrkit.evaluate: data_range must be a positive number: 1.0 or 255"),
        ("evaluate(data_range='255')", lambda: esrkit.evaluate(net, data, data_range="255"),
         "esrkit.evaluate: data_range must be a positive number"),
        ("evaluate(data_range=nan)", lambda: esrkit.evaluate(net, data, data_range=float("nan")),
         "esrkit.evaluate: data_range must be a positive number"),
        ("evaluate(None)", lambda: esrkit.evaluate(None, data, data_range=1.0), "esrkit.evaluate: model must be"),
        ("evaluate(data=None)", lambda: esrkit.evaluate(net, None, data_range=1.0), "esrkit.evaluate: data must be"),
        ("evaluate(scale=0)", lambda: esrkit.evaluate(net, data, data_range=1.0, scale=0),
         "esrkit.evaluate: scale must be a positive integer"),
        ("evaluate(weights=) of a module", lambda: esrkit.evaluate(net, data, data_range=1.0, weights="w.pth"),
         "esrkit.evaluate: weights must be left out for an nn.Module"),
        ("evaluate(entry, data_range=)", lambda: esrkit.evaluate("MLRN-entire", data, data_range=1.0),
         "esrkit.evaluate: data_range must be left out for entry MLRN-entire (its own is 255)"),
        ("evaluate(ssim=1)", lambda: esrkit.evaluate(net, data, data_range=1.0, ssim=1),
         "esrkit.evaluate: ssim must be True or False"),
        ("entry_from_spec()", lambda: esrkit.entry_from_spec(), "esrkit.entry_from_spec: give exactly one of"),
        ("entry_from_spec(data_range=-1)", lambda: esrkit.entry_from_spec(model_file=team, data_range=-1),
         "esrkit.entry_from_spec: data_range=-1 must be a positive number"),
        ("entry_from_spec(init_args=3)", lambda: esrkit.entry_from_spec(model_file=team, class_name="Net", init_args=3),
         "esrkit.entry_from_spec: init_args=3 must be a list or tuple"),
        ("entry_from_spec(TeamSpec)", lambda: esrkit.entry_from_spec(esrkit.TeamSpec(entry="RFDN", scale=0)),
         "esrkit.entry_from_spec: scale=0 must be a positive integer"),
        ("entry_from_spec('RFDN')", lambda: esrkit.entry_from_spec("RFDN"), "esrkit.entry_from_spec: spec must be"),
        ("load_entries('RFDN')", lambda: esrkit.load_entries("RFDN"), "esrkit.load_entries: names must be a list"),
        ("get_entry(True)", lambda: esrkit.get_entry(True), "esrkit.get_entry: name_or_id must be"),
        ("register(None)", lambda: esrkit.register(None), "esrkit.register: entry must be an esrkit.Entry"),
        ("register(twice)", lambda: esrkit.register(esrkit.get_entry("RFDN")),
         "esrkit.register: entry name 'RFDN' is registered twice"),
        ("load_spec_file(None)", lambda: esrkit.load_spec_file(None), "esrkit.load_spec_file: path must be"),
    ]


def test_every_public_function_names_a_wrong_argument(tmp_path: Path) -> None:
    """A wrong type or value is one KitError line naming the function, the argument and what it must be: never an
    AttributeError from inside, nor a number (``data_range=-1`` once gave a 2.4 dB PSNR silently)."""
    for label, call, expected in wrong_calls(tmp_path):
        with pytest.raises(esrkit.KitError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(expected) and "\n" not in message, (label, message)
    assert not any(tmp_path.iterdir())  # nothing was written
