"""Writing without losing anything: files replaced together or not at all, SR images staged, outputs checked first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esrkit import atomic
from esrkit.errors import KitError


def test_replace_together_undoes_the_first_rename_when_the_second_fails(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    real_replace = os.replace

    def failing(src, dst):  # noqa: ANN001
        if Path(dst) == b:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(KitError, match=r"cannot write .*b\.txt: Input/output error"):
        atomic.replace_together({a: "new a", b: "new b"})
    monkeypatch.undo()
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt"]


def test_replace_together_writes_new_files_and_moves_finished_ones(tmp_path: Path) -> None:
    finished = tmp_path / ".built.tmp"
    finished.write_bytes(b"zip bytes")
    atomic.replace_together({tmp_path / "x" / "new.txt": "text", tmp_path / "upload.zip": finished})
    assert (tmp_path / "x" / "new.txt").read_text() == "text" and (tmp_path / "upload.zip").read_bytes() == b"zip bytes"
    assert not finished.exists()


def test_staged_folder_moves_files_in_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "sr" / "10_MLRN-entire"
    (final / "valid").mkdir(parents=True)
    (final / "valid" / "old.png").write_bytes(b"earlier run")
    (final / "valid" / "a.png").write_bytes(b"earlier a")
    with pytest.raises(RuntimeError):
        with atomic.StagedFolder(final) as staging:
            (staging / "valid").mkdir()
            (staging / "valid" / "a.png").write_bytes(b"new a")
            raise RuntimeError("the second image was corrupt")
    assert (final / "valid" / "a.png").read_bytes() == b"earlier a"  # an earlier run's SR is untouched
    with atomic.StagedFolder(final) as staging:
        (staging / "valid").mkdir()
        (staging / "valid" / "a.png").write_bytes(b"new a")
    assert (final / "valid" / "a.png").read_bytes() == b"new a"
    assert not (final / "valid" / "old.png").exists()  # the split's folder holds this run alone: never two runs mixed
    assert sorted(p.name for p in final.parent.iterdir()) == ["10_MLRN-entire"]  # no staging folder left


@pytest.mark.parametrize("relative", ["a_file/sub", "a_file"])
def test_outputs_under_a_regular_file_are_refused_before_work(tmp_path: Path, relative: str) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(KitError, match="--out"):
        atomic.check_writable_file(tmp_path / relative / "report.md", "--out")
    with pytest.raises(KitError, match="--save_dir .* is not writable"):
        atomic.check_writable_folder(tmp_path / relative / "sr", "--save_dir")
    assert (tmp_path / "a_file").read_text() == "x"


def test_a_folder_given_as_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="is a folder: give a file path"):
        atomic.check_writable_file(tmp_path, "--markdown")


def test_parallel_writes_leave_the_umask_alone(tmp_path: Path) -> None:
    """Writer threads create files at once: the process's umask (read once, at import) is never changed."""
    import threading

    before = os.umask(0o022)
    os.umask(before)
    threads = [threading.Thread(target=lambda i=i: [atomic.atomic_write(tmp_path / f"{i}_{k}.txt", "x")
                                                    for k in range(50)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = os.umask(before)
    os.umask(after)
    assert after == before


def test_a_finished_file_moved_into_place_gets_a_normal_mode(tmp_path: Path) -> None:
    """The upload zip was staged with mkstemp and moved in as 0600: unreadable for the organiser's other accounts."""
    import os

    from esrkit.submission.package import write_flat_zip

    mask = os.umask(0o022)
    os.umask(mask)
    write_flat_zip(tmp_path / "team23.zip", [], {"readme.txt": "runtime per image [ms]: 1.0\n"})
    assert (tmp_path / "team23.zip").stat().st_mode & 0o777 == 0o666 & ~mask
