"""``merge`` refuses what cannot be ranked together (another year's convention, FLOPs counter or data set)
unless told ``--allow_mixed``, names ``--out`` in its messages, and leaves no output folder behind when it
fails. The inputs are results.json files written here with the keys the kit writes; the page made from a
mixed merge is read back with tests/test_results_page.py's parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from esrkit.errors import KitError
from esrkit.results import ResultsFiles
from esrkit.submission.__main__ import main
from tests.test_results_page import entry, parse

DIV2K_LSDIR = dict(data_dir="/data/DIV2K_LSDIR", data_fingerprint="d" * 32)
SET5 = dict(data_dir="/data/Set5", data_fingerprint="5" * 32)


def write(folder: Path, entries: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def shards(tmp_path: Path) -> tuple[Path, Path]:
    """Shard A: the NTIRE 2025 baseline and two teams on DIV2K_LSDIR; shard B: one more such team, and a team
    measured under the 2023 convention (the hook counter) on Set5."""
    a = write(tmp_path / "a", {"00_EFDN_baseline": entry(20.0, 27.0, 0.25, 16.0, **DIV2K_LSDIR),
                               "01_A": entry(15.0, 27.1, 0.2, 12.0, **DIV2K_LSDIR),
                               "02_B": entry(10.0, 27.05, 0.25, 16.0, **DIV2K_LSDIR)})
    b = write(tmp_path / "b", {"03_C": entry(12.0, 27.02, 0.3, 14.0, **DIV2K_LSDIR),
                               "04_Old": entry(12.0, 32.1, 0.3, 20.0, convention="NTIRE 2023", layout="benchmark",
                                               flops_counter="official hook counter (2022-2023)", **SET5)})
    return a, b


def test_entries_of_another_convention_counter_or_data_are_refused_in_one_line(shards, tmp_path, capsys) -> None:
    a, b = shards
    out = tmp_path / "merged"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: entries measured otherwise than 00_EFDN_baseline in ")
    assert f"04_Old in {b} (results_convention NTIRE 2023, not NTIRE 2025; flops_counter official hook counter " \
           "(2022-2023), not fvcore (2024-2025); data /data/Set5 (valid 1 images), not /data/DIV2K_LSDIR " \
           "(valid 1 images))" in err
    assert "03_C" not in err and "--allow_mixed" in err and "nothing was written" in err
    assert not out.exists()
    # other data alone (the same year, the same counter) is refused just the same
    write(tmp_path / "b", {"03_C": entry(12.0, 27.02, 0.3, 14.0, **SET5)})
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 2
    assert "03_C in " in capsys.readouterr().err and not out.exists()


def test_allow_mixed_keeps_them_and_the_page_does_not_rank_them(shards, tmp_path, capsys) -> None:
    a, b = shards
    out = tmp_path / "merged"
    assert main(["merge", str(a), str(b), "--out", str(out), "--allow_mixed"]) == 0
    captured = capsys.readouterr()
    assert "warning: --allow_mixed kept 1 entry measured otherwise than 00_EFDN_baseline (04_Old): the results " \
           "page marks them and does not rank them" in captured.err
    merged = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert list(merged) == ["00_EFDN_baseline", "01_A", "02_B", "03_C", "04_Old"]
    assert merged["04_Old"] == json.loads(b.read_text(encoding="utf-8"))["04_Old"]
    page = parse((out / "results.html").read_text(encoding="utf-8"))
    old = page.rows["04_Old"]
    assert "other data" in old["rank"]["text"] and not old["rank"]["nums"]
    assert "other data" in old["flags"]["text"]
    assert sorted(float(page.rows[k]["rank"]["nums"][0]["data-value"]) for k in ("01_A", "02_B", "03_C")) == [1, 2, 3]


def test_out_that_is_a_file_is_said_with_out(shards, tmp_path, capsys) -> None:
    a, _ = shards
    target = tmp_path / "results.json"
    target.write_text("{}\n", encoding="utf-8")
    assert main(["merge", str(a), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {target}: {target} is a file, not a folder: give --out a folder") and \
        f"(--out {tmp_path} writes {tmp_path / 'results.json'})" in err
    assert "--results_dir" not in err and target.read_text(encoding="utf-8") == "{}\n"
    assert main(["merge", str(a), "--out", str(target / "deeper")]) == 2
    assert f"{target} is a file, not a folder" in capsys.readouterr().err


def test_a_failed_merge_leaves_no_folder_it_made_and_keeps_one_that_was_there(shards, tmp_path, capsys,
                                                                              monkeypatch) -> None:
    a, b = shards
    clash = write(tmp_path / "c", {"01_A": entry(99.0, 27.1, 0.2, 12.0, **DIV2K_LSDIR)})
    out = tmp_path / "new" / "merged"
    assert main(["merge", str(a), str(clash), "--out", str(out)]) == 2  # 01_A: two different figures
    assert "hold different figures" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()

    def disk_full(self: ResultsFiles, entries: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        raise KitError(f"cannot write {self.folder / 'results.json'}: disk full")

    monkeypatch.setattr(ResultsFiles, "merge", disk_full)
    assert main(["merge", str(a), "--out", str(out)]) == 2  # fails after the folder was made
    assert "disk full" in capsys.readouterr().err and not (tmp_path / "new").exists()
    there = tmp_path / "there"
    there.mkdir()
    (there / "notes.txt").write_text("mine\n", encoding="utf-8")
    assert main(["merge", str(a), "--out", str(there)]) == 2
    assert [p.name for p in there.iterdir()] == ["notes.txt"]
