"""The kit's ``test_demo.py`` beside the official NTIRE 2023 ESR kit's own ``test_demo.py`` (the unmodified copy in
``../shared/reference/official_kit_ntire2023``, run through ``benchmarks/official_cpu.py``, which substitutes its
CUDA calls at run time and says which), on the same folder: Set5 linked into the DIV2K 2023 layout the official
code reads, RFDN with the official weights, one torch thread on both sides (``OMP_NUM_THREADS=1``: oneDNN rounds
differently with another thread count). Every image's PSNR, every SR pixel and the four counts must be equal.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from benchmarks.official_cpu import RESULTS_KEY, SUBSTITUTIONS, default_official_kit, link_div2k_2023
from benchmarks.official_cpu import main as official_cpu_main
from esrkit.paths import REPO_ROOT
from tests.conftest import require

COUNTS = ("num_parameters", "flops", "activations", "num_conv")  # as the official results.json holds them
TIMEOUT_S = 300


def start(*argv: str | Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *map(str, argv)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, out
    return out


def only_entry(results_dir: Path) -> tuple[str, dict]:
    (key, record), = json.loads((results_dir / "results.json").read_text()).items()
    return key, record


def test_the_kits_test_demo_gives_the_official_test_demos_figures_and_pixels(tmp_path, benchmarks_dir,
                                                                             official_weights_dir) -> None:
    official_kit = require(default_official_kit())
    weights = official_weights_dir / "rfdn_ntire2023_team00.pth"
    data = tmp_path / "div2k_2023"
    renamed = link_div2k_2023(benchmarks_dir / "Set5", data)
    assert list(renamed.values()) == ["0801", "0802", "0803", "0804", "0805"]
    official = start("-m", "benchmarks.official_cpu", "test_demo", "--official_kit", official_kit, "--data_dir", data,
                     "--run_dir", tmp_path / "official", "--save_dir", tmp_path / "official" / "sr",
                     "--weights", weights)
    kit = start("test_demo.py", "--data_dir", data, "--model_id", "RFDN", "--weights", weights,
                "--results_dir", tmp_path / "kit", "--save_dir", tmp_path / "kit" / "sr", "--quiet")
    official_out, kit_out = finish(official), finish(kit)

    # The official run says what it substituted, and ran its own main on one thread.
    assert "on the CPU with 1 torch thread(s); substituted before its main runs:" in official_out
    torchvision_absent = importlib.util.find_spec("torchvision") is None
    for name, what in SUBSTITUTIONS:
        assert (f"  {name} -> {what}" in official_out) == (name != "torchvision.utils.make_grid" or torchvision_absent)
    assert "select_dataset('valid'): 5 of its 100 pairs are in" in official_out
    assert "------> Average runtime of (valid) is" in official_out  # its own logger's lines

    official_key, official_record = only_entry(tmp_path / "official")
    kit_key, kit_record = only_entry(tmp_path / "kit")
    assert official_key == kit_key == RESULTS_KEY
    assert kit_record["device"].endswith("(1 threads)"), kit_out
    names = list(renamed.values())
    assert kit_record["valid_images"] == names
    assert kit_record["valid_psnr"] == official_record["valid_psnr"]  # per image, to the last bit
    assert kit_record["valid_ave_psnr"] == official_record["valid_ave_psnr"]
    assert {k: kit_record[k] for k in COUNTS} == {k: official_record[k] for k in COUNTS}
    for name in names:
        ours = cv2.imread(str(tmp_path / "kit" / "sr" / kit_key / "valid" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(tmp_path / "official" / "sr" / official_key / "valid" / f"{name}.png"),
                            cv2.IMREAD_UNCHANGED)
        assert ours is not None and theirs is not None and ours.shape == theirs.shape
        assert np.array_equal(ours, theirs), name


def test_wrong_inputs_are_one_line_errors_and_nothing_is_written(tmp_path, capsys, two_image_benchmark,
                                                                  official_weights_dir) -> None:
    official_kit = require(default_official_kit())
    run_dir = tmp_path / "run"
    common = ["test_demo", "--run_dir", str(run_dir), "--save_dir", str(run_dir / "sr")]
    cases = [
        (["--official_kit", str(tmp_path), "--data_dir", str(two_image_benchmark)],
         f"--official_kit {tmp_path}: no test_demo.py, utils/utils_image.py"),
        (["--official_kit", str(official_kit), "--data_dir", str(tmp_path)],
         f"--data_dir {tmp_path}: neither the DIV2K 2023 layout"),
        (["--official_kit", str(official_kit), "--data_dir", str(two_image_benchmark), "--weights",
          str(tmp_path / "none.pth")], f"--weights {tmp_path / 'none.pth'}: no such file"),
    ]
    (two_image_benchmark / "LR_bicubic" / "X4" / "img_005x4.png").rename(tmp_path / "moved.png")
    cases.append((["--official_kit", str(official_kit), "--data_dir", str(two_image_benchmark)],
                  "img_005x4.png is missing (each HR image needs its x4 LR file)"))
    for argv, message in cases:
        assert official_cpu_main([*common, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
        assert not run_dir.exists()
