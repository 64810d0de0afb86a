"""results.json / results.txt: the official keys and format, merged safely."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from esrkit import results as res
from esrkit.errors import KitError
from esrkit.runner import SplitResult


def split(name: str, n: int = 2) -> SplitResult:
    return SplitResult(name, [f"im{i}" for i in range(n)], [10.0 + i for i in range(n)], [28.0 + i for i in range(n)],
                       [29.0] * n, 123.4, 100.0, warm_runtime_ms=[5.0] * n)


def test_split_record_has_official_keys() -> None:
    rec = res.split_record(split("valid", 3))
    for key in ("valid_runtime", "valid_psnr", "valid_memory", "valid_ave_runtime", "valid_ave_psnr"):
        assert key in rec
    assert rec["valid_ave_runtime"] == pytest.approx(11.0) and rec["valid_ave_psnr"] == pytest.approx(29.0)
    assert rec["valid_cold_runtime"] == 10.0 and rec["valid_ave_runtime_excl_first"] == pytest.approx(11.5)
    assert "valid_ssim" not in rec


def _merge_many(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(15):
        res.merge_results(Path(path), f"{worker:02}_{i}", {"flops": float(i)})


def test_concurrent_merges_keep_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    res.merge_results(path, "99_existing", {"flops": 1.0})
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_merge_many, [(str(path), 0), (str(path), 1)])
    data = json.loads(path.read_text())
    assert len(data) == 31 and data["99_existing"] == {"flops": 1.0}


def test_failed_write_leaves_previous_results(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "results.json"
    res.merge_results(path, "00_A", {"flops": 1.0})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(res.json, "dumps", boom)
    with pytest.raises(KeyboardInterrupt):
        res.merge_results(path, "01_B", {"flops": 2.0})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_corrupt_results_json_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"00_A": {"flops": 1.0')
    with pytest.raises(KitError, match="not valid JSON"):
        res.merge_results(path, "01_B", {})
    assert path.read_text() == '{"00_A": {"flops": 1.0'


def test_results_txt_official_format() -> None:
    entry = {"valid_ave_psnr": 29.04123, "valid_ave_runtime": 41.9712, "valid_memory": 788.126,
             "num_parameters": 0.433448, "flops": 27.1026, "activations": 112.03424, "num_conv": 64,
             "test_ave_psnr": 28.75, "test_ave_runtime": 30.0}
    txt = res.render_results_txt({"00_RFDN": entry}, include_test=False, hybrid_test=False)
    header, row = txt.splitlines()
    assert header.split("\t")[0] == "Model" + " " * 15
    assert row == "\t".join(["00_RFDN" + " " * 13, "29.04     ", "41.97         ", "0.433     ", "27.10     ",
                             "112.03  ", "788.13  ", "  64    "])
    with_test = res.render_results_txt({"00_RFDN": entry, "10_old": {"flops": 1.0}}, include_test=True, hybrid_test=False)
    cells = with_test.splitlines()[1].split("\t")
    assert [c.strip() for c in cells] == ["00_RFDN", "29.04", "28.75", "41.97", "30.00", "35.99", "0.433", "27.10",
                                          "112.03", "788.13", "64"]
    assert with_test.splitlines()[2].split("\t")[1].strip() == "-"  # an older entry without test keys
