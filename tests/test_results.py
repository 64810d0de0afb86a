"""results.json / results.txt: the official keys and format, rendered from the records, written as one unit.

The official results.txt writer is reimplemented here from its description (``OFFICIAL_KITS.md`` section 1:
tab-separated, ``2.2f`` PSNR, ``3.2f`` time, ``2.3f`` params, ``2.2f`` FLOPs / acts / memory, ``4d`` conv,
KeyError on a missing key), not copied: every results.json the kit writes must go through it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from esrkit import atomic
from esrkit import results as res
from esrkit.errors import KitError
from esrkit.evaluation import ImageRecord, SplitRecord


def record(name: str = "valid", n: int = 2, memory: float | None = 123.4) -> SplitRecord:
    images = [ImageRecord(f"im{i}", 10.0 + i, {"psnr": 28.0 + i, "psnr_y": 29.0}, warm_ms=5.0) for i in range(n)]
    return SplitRecord(name, ("psnr", "psnr_y"), images, memory_mib=memory, split_peak_mib=100.0)


def official_txt_row(name: str, entry: dict) -> str:
    """What the official kit's writer produces for one entry without --include_test (raises as it does)."""
    fields = [f"{entry['valid_ave_psnr']:2.2f}", f"{entry['valid_ave_runtime']:3.2f}", f"{entry['num_parameters']:2.3f}",
              f"{entry['flops']:2.2f}", f"{entry['activations']:2.2f}", f"{entry['valid_memory']:2.2f}",
              f"{entry['num_conv']:4d}"]
    return "\t".join([f"{name:20s}", *(f"{v:{w}s}" for v, w in zip(fields, (10, 14, 10, 10, 8, 8, 8)))])


def test_split_keys_are_the_official_ones_then_the_extras() -> None:
    keys = res.split_keys(record("valid", 3))
    assert list(keys)[:5] == ["valid_runtime", "valid_memory", "valid_ave_runtime", "valid_psnr", "valid_ave_psnr"]
    assert keys["valid_ave_runtime"] == pytest.approx(11.0) and keys["valid_ave_psnr"] == pytest.approx(29.0)
    assert keys["valid_cold_runtime"] == 10.0 and keys["valid_ave_runtime_excl_first"] == pytest.approx(11.5)
    assert keys["valid_images"] == ["im0", "im1", "im2"] and keys["valid_ave_warm_runtime"] == 5.0
    assert "valid_ssim" not in keys and keys["valid_psnr_y"] == [29.0, 29.0, 29.0]


def test_memory_off_cuda_is_a_number_the_official_writer_formats() -> None:
    keys = res.split_keys(record(memory=None))
    assert keys["valid_memory"] == 0.0
    entry = {**keys, "num_parameters": 0.2747, "flops": 16.85, "activations": 97.87, "num_conv": 43, "memory_measured": False}
    ours = res.render_results_txt({"10_MLRN-entire": entry}, include_test=False, hybrid_test=False).splitlines()[1]
    assert ours == official_txt_row("10_MLRN-entire", entry) and ours.split("\t")[6].strip() == "0.00"


def test_results_txt_official_format() -> None:
    entry = {"valid_ave_psnr": 29.04123, "valid_ave_runtime": 41.9712, "valid_memory": 788.126,
             "num_parameters": 0.433448, "flops": 27.1026, "activations": 112.03424, "num_conv": 64,
             "test_ave_psnr": 28.75, "test_ave_runtime": 30.0}
    txt = res.render_results_txt({"00_RFDN": entry}, include_test=False, hybrid_test=False)
    header, row = txt.splitlines()
    assert header.split("\t")[0] == "Model" + " " * 15
    assert row == official_txt_row("00_RFDN", entry) == "\t".join(
        ["00_RFDN" + " " * 13, "29.04     ", "41.97         ", "0.433     ", "27.10     ", "112.03  ", "788.13  ", "  64    "])
    with_test = res.render_results_txt({"00_RFDN": entry, "10_old": {"flops": 1.0}}, include_test=True, hybrid_test=False)
    cells = with_test.splitlines()[1].split("\t")
    assert [c.strip() for c in cells] == ["00_RFDN", "29.04", "28.75", "41.97", "30.00", "35.99", "0.433", "27.10",
                                          "112.03", "788.13", "64"]
    assert with_test.splitlines()[2].split("\t")[1].strip() == "-"  # an older entry without test keys


def test_entries_of_another_shape_are_kept_and_shown_as_dashes(tmp_path: Path) -> None:
    """A float num_conv, a string, a non-dict entry: kept in results.json as they are, '-' in results.txt."""
    odd = {"00_Float": {"num_conv": 43.0, "flops": "n/a"}, "01_List": [1, 2], "02_None": None}
    (tmp_path / "results.json").write_text(json.dumps(odd))
    files = res.ResultsFiles(tmp_path)
    files.preflight()
    merged = files.merge({"10_New": {"valid_ave_psnr": 30.0, "num_conv": 43}})
    assert {k: merged[k] for k in odd} == odd and json.loads((tmp_path / "results.json").read_text())["01_List"] == [1, 2]
    rows = [line.split("\t") for line in (tmp_path / "results.txt").read_text().splitlines()[1:]]
    assert [r[0].strip() for r in rows] == ["00_Float", "01_List", "02_None", "10_New"]
    assert rows[0][7].strip() == "-" and rows[0][4].strip() == "-" and set(c.strip() for c in rows[1][1:]) == {"-"}
    assert rows[3][1].strip() == "30.00" and rows[3][7].strip() == "43"


def _merge_many(args: tuple[str, int]) -> None:
    folder, worker = args
    for i in range(10):
        res.ResultsFiles(Path(folder)).merge({f"{worker:02}_{i}": {"flops": float(i), "num_conv": i}})


def test_concurrent_writers_keep_every_entry_in_both_files(tmp_path: Path) -> None:
    """Four processes merging at once: results.json and results.txt both end with every entry (same lock)."""
    res.ResultsFiles(tmp_path).merge({"99_existing": {"flops": 1.0}})
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_merge_many, [(str(tmp_path), w) for w in range(4)])
    data = json.loads((tmp_path / "results.json").read_text())
    rows = [line.split("\t")[0].strip() for line in (tmp_path / "results.txt").read_text().splitlines()[1:]]
    assert len(data) == 41 and data["99_existing"] == {"flops": 1.0}
    assert rows == list(data)  # the txt is derived from the json it was written with


def test_a_failed_write_replaces_neither_file(tmp_path: Path, monkeypatch) -> None:
    """A full disk while writing results.txt: results.json is not updated either, and the error names the file."""
    files = res.ResultsFiles(tmp_path)
    files.merge({"00_A": {"flops": 1.0}})
    before = {p.name: p.read_bytes() for p in (files.json_path, files.txt_path)}
    real_stage = atomic._stage

    def full_disk(path: Path, data: object) -> Path:
        if path.name == "results.txt":  # results.json was staged first: the disk fills up on the second file
            raise atomic._cannot_write(path, OSError(28, "No space left on device"))
        return real_stage(path, data)  # type: ignore[arg-type]

    monkeypatch.setattr(atomic, "_stage", full_disk)
    with pytest.raises(KitError, match=r"cannot write .*results\.txt: No space left on device"):
        files.merge({"01_B": {"flops": 2.0}})
    assert {p.name: p.read_bytes() for p in (files.json_path, files.txt_path)} == before
    # no temporary left (the lock file stays, empty, by design)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".esrkit.lock", "results.json", "results.txt"]


def test_interrupted_merge_leaves_both_files(tmp_path: Path, monkeypatch) -> None:
    files = res.ResultsFiles(tmp_path)
    files.merge({"00_A": {"flops": 1.0}})
    before = files.json_path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(res.json, "dumps", boom)
    with pytest.raises(KeyboardInterrupt):
        files.merge({"01_B": {"flops": 2.0}})
    assert files.json_path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".esrkit.lock", "results.json", "results.txt"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"00_A": {"flops": 1.0', "not valid JSON"),
    ("[1, 2, 3]", "does not hold a JSON object"),
])
def test_an_unmergeable_results_json_stops_the_preflight(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "results.json").write_text(content)
    with pytest.raises(KitError, match=message):
        res.ResultsFiles(tmp_path).preflight()
    assert (tmp_path / "results.json").read_text() == content


def test_preflight_refuses_a_folder_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(KitError, match="--results_dir .*a_file/sub cannot be created"):
        res.ResultsFiles(tmp_path / "a_file" / "sub").preflight()
    (tmp_path / "out" / "results.txt").mkdir(parents=True)
    with pytest.raises(KitError, match="results.txt exists and is not a file"):
        res.ResultsFiles(tmp_path / "out").preflight()


def test_which_earlier_entries_a_run_may_replace() -> None:
    """Same data: replaced (as the official kit does); other data: refused unless --replace; the demo set's trial
    entry and another tool's entry (no data recorded): replaced with a note."""
    from esrkit.outputs import DataIdentity, replacement_problem

    here = DataIdentity("/data/B100", "benchmark", (("valid", 100),), "f" * 32)
    same = {"k": {"data_dir": "/data/B100", "data_fingerprint": "f" * 32}}
    changed = {"k": {"data_dir": "/data/B100", "data_fingerprint": "0" * 32, "valid_images": ["a"]}}
    older_kit = {"k": {"data_dir": "/data/Set14", "layout": "benchmark"}}
    demo = {"k": {"data_dir": "/skimage/data", "data_fingerprint": "1" * 32, "layout": "demo"}}
    official = {"k": {"valid_ave_psnr": 29.0}}
    assert replacement_problem(same, "k", here, replace=False) == (None, None)
    problem, _ = replacement_problem(changed, "k", here, replace=False)
    assert "already holds k measured on /data/B100 (valid 1 images)" in problem and "--replace" in problem
    assert replacement_problem(changed, "k", here, replace=True)[0] is None
    assert "measured on /data/Set14" in replacement_problem(older_kit, "k", here, replace=False)[0]
    assert replacement_problem(demo, "k", here, replace=False)[1].startswith("note: k of the embedded demo set")
    assert "records no data folder" in replacement_problem(official, "k", here, replace=False)[1]
    assert replacement_problem({}, "k", here, replace=False) == (None, None)


def test_a_warm_pass_on_a_sample_says_which_images() -> None:
    from esrkit.evaluation import warm_sample

    assert warm_sample(100, 10) == [0, 11, 22, 33, 44, 55, 66, 77, 88, 99]  # spread, first and last included
    assert warm_sample(5, 10) == [0, 1, 2, 3, 4] and warm_sample(5, None) == [0, 1, 2, 3, 4]
    assert warm_sample(7, 1) == [3]
    assert warm_sample(100, "auto") == warm_sample(100, 10) and warm_sample(5, "auto") == [2]  # a tenth, 1 to 10
    assert len(warm_sample(300, "auto")) == 10 and len(warm_sample(40, "auto")) == 4
    r = record("valid", 4)
    for image in r.images[1:3]:
        image.warm_ms = None
    keys = res.split_keys(r)
    assert keys["valid_warm_runtime"] == [5.0, 5.0] and keys["valid_warm_images"] == ["im0", "im3"]
    assert "valid_warm_images" not in res.split_keys(record("valid", 3))  # all images: no list of them
