"""`python test_demo.py` with no arguments: MLRN-entire with this project's weights on the embedded demo photos."""

from __future__ import annotations

import json
from pathlib import Path


import test_demo
from esrkit.imresize import imresize
from esrkit import metrics
from esrkit.datasets import demo_split
from esrkit.registry import get_entry


def test_default_run_uses_trained_weights_on_the_demo_set(tmp_path: Path, monkeypatch, capsys) -> None:
    entry = get_entry("MLRN-entire")
    assert entry.has_default_weights(), "model_zoo/mlrn_entire_x4.pth (this project's weights) is missing"
    monkeypatch.chdir(tmp_path)
    assert test_demo.main([]) == 0
    out = capsys.readouterr().out
    assert "NOT DIV2K" in out and "10_MLRN-entire" in out
    rec = json.loads((tmp_path / "results.json").read_text())["10_MLRN-entire"]
    assert rec["layout"] == "demo" and rec["lr_source"].startswith("made by the kit")
    assert len(list((tmp_path / "results" / "10_MLRN-entire" / "valid").glob("*.png"))) == 5
    # Real trained weights: clearly better than the bicubic upscale of the same LR, on every photo.
    for pair, psnr in zip(demo_split().pairs, rec["valid_psnr"]):
        hr, lr = pair.load(4)
        bicubic = metrics.psnr(imresize(lr, 4.0), hr, crop_border=4)
        assert psnr > bicubic + 0.3, f"{pair.name}: {psnr:.2f} dB vs bicubic {bicubic:.2f} dB"
