"""Every dataset layout, built as a small fixture that copies the official folder names, loads the right pairs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from esrkit.datasets import LAYOUTS, demo_split, detect_layout, open_split
from esrkit.errors import KitError
from esrkit.imageio import read_rgb, write_png

RNG = np.random.default_rng(0)


def make_pair(root: Path, hr_dir: str, lr_dir: str | None, stem: str, lr_name: str, hr_size=(18, 21)) -> np.ndarray:
    """Write an HR image (deliberately not a multiple of 4) and, if asked, an LR whose pixels encode the stem."""
    hr = RNG.integers(0, 256, (*hr_size, 3), dtype=np.uint8)
    write_png(root / hr_dir / f"{stem}.png", hr)
    if lr_dir is not None:
        lr = np.full((hr_size[0] // 4, hr_size[1] // 4, 3), int(stem[-2:]) % 256, dtype=np.uint8)
        write_png(root / lr_dir / lr_name.format(stem=stem), lr)
    return hr


def assert_paired(split, hr_dir: Path, lr_dir: Path, lr_name: str) -> None:
    for pair in split.pairs:
        assert pair.hr_path == hr_dir / f"{pair.name}.png"
        assert pair.lr_path == lr_dir / lr_name.format(stem=pair.name)
        hr, lr = pair.load(4)
        assert hr.shape == (16, 20, 3)  # modcropped
        assert lr.shape == (4, 5, 3)
        assert int(lr[0, 0, 0]) == int(pair.name[-2:]) % 256  # the LR really is this HR's


def test_ntire2023_layout(tmp_path: Path) -> None:
    for stem in ("0801", "0802", "0803"):
        make_pair(tmp_path, "DIV2K_valid_HR", "DIV2K_valid_LR", stem, "{stem}x4.png")
    for stem in ("0901", "0902"):
        make_pair(tmp_path, "DIV2K_test_HR", "DIV2K_test_LR", stem, "{stem}.png")  # no x4 suffix in 2023 test
    for stem in ("0000001", "0901"):
        make_pair(tmp_path, "LSDIR_DIV2K_test_HR", "LSDIR_DIV2K_test_LR", stem, "{stem}x4.png")
    assert detect_layout(tmp_path) == "ntire2023"
    valid = open_split(tmp_path, "valid")
    assert [p.name for p in valid.pairs] == ["0801", "0802", "0803"]
    assert_paired(valid, tmp_path / "DIV2K_valid_HR", tmp_path / "DIV2K_valid_LR", "{stem}x4.png")
    test = open_split(tmp_path, "test")
    assert_paired(test, tmp_path / "DIV2K_test_HR", tmp_path / "DIV2K_test_LR", "{stem}.png")
    hybrid = open_split(tmp_path, "hybrid_test")
    assert [p.name for p in hybrid.pairs] == ["0000001", "0901"]
    assert_paired(hybrid, tmp_path / "LSDIR_DIV2K_test_HR", tmp_path / "LSDIR_DIV2K_test_LR", "{stem}x4.png")


def test_ntire2024_layout_with_7_digit_lsdir_names(tmp_path: Path) -> None:
    for stem in ("0000001", "0000002", "0801", "0802"):
        make_pair(tmp_path, "DIV2K_LSDIR_valid_HR", "DIV2K_LSDIR_valid_LR", stem, "{stem}x4.png")
    for stem in ("0000101", "0901"):
        make_pair(tmp_path, "DIV2K_LSDIR_test_HR", "DIV2K_LSDIR_test_LR", stem, "{stem}x4.png")
    assert detect_layout(tmp_path) == "ntire2024"
    valid = open_split(tmp_path, "valid")
    assert [p.name for p in valid.pairs] == ["0000001", "0000002", "0801", "0802"]
    assert_paired(valid, tmp_path / "DIV2K_LSDIR_valid_HR", tmp_path / "DIV2K_LSDIR_valid_LR", "{stem}x4.png")
    assert_paired(open_split(tmp_path, "test"), tmp_path / "DIV2K_LSDIR_test_HR", tmp_path / "DIV2K_LSDIR_test_LR", "{stem}x4.png")


def test_pairs_by_name_not_sort_order(tmp_path: Path) -> None:
    """An extra LR file that sorts first must not shift the pairing."""
    for stem in ("0801", "0802"):
        make_pair(tmp_path, "DIV2K_valid_HR", "DIV2K_valid_LR", stem, "{stem}x4.png")
    write_png(tmp_path / "DIV2K_valid_LR" / "0800x4.png", np.zeros((4, 5, 3), np.uint8))
    assert_paired(open_split(tmp_path, "valid"), tmp_path / "DIV2K_valid_HR", tmp_path / "DIV2K_valid_LR", "{stem}x4.png")


def test_path_containing_HR_does_not_break_lr_lookup(tmp_path: Path) -> None:
    root = tmp_path / "my_HR_data"  # the official replace("_HR", "_LR") on the whole path breaks here
    make_pair(root, "DIV2K_LSDIR_valid_HR", "DIV2K_LSDIR_valid_LR", "0801", "{stem}x4.png")
    assert open_split(root, "valid").pairs[0].lr_path == root / "DIV2K_LSDIR_valid_LR" / "0801x4.png"


def test_benchmark_layout(benchmarks_dir: Path) -> None:
    split = open_split(benchmarks_dir / "Set5")
    assert split.layout == "benchmark"
    assert [p.name for p in split.pairs] == [f"img_00{i}" for i in range(1, 6)]
    for pair in split.pairs:
        hr, lr = pair.load(4)
        assert hr.shape[0] == 4 * lr.shape[0] and hr.shape[1] == 4 * lr.shape[1]


def test_plain_folder_makes_lr_with_imresize(tmp_path: Path, benchmarks_dir: Path) -> None:
    src = benchmarks_dir / "Set5" / "HR" / "img_002.png"
    (tmp_path / "img_002.png").write_bytes(src.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    split = open_split(tmp_path)
    assert split.layout == "folder" and split.lr_made_by_kit
    assert [p.name for p in split.pairs] == ["img_002"]
    hr, lr = split.pairs[0].load(4)
    matlab_lr = read_rgb(benchmarks_dir / "Set5" / "LR_bicubic" / "X4" / "img_002x4.png")
    assert lr.shape == matlab_lr.shape
    assert np.abs(lr.astype(int) - matlab_lr.astype(int)).mean() < 0.2


def test_demo_split_ships_with_scikit_image() -> None:
    split = demo_split()
    assert len(split) == 5 and split.lr_made_by_kit
    hr, lr = split.pairs[1].load(4)  # chelsea: 300x451 -> modcrop 300x448
    assert hr.shape == (300, 448, 3) and lr.shape == (75, 112, 3)


# --- bad input: each is a one-line KitError naming the file and the fix -------------------------

def add_strays(folder: Path, *images: str) -> list[str]:
    """A text file, a broken link and the given (unused) images in ``folder``: the names a warning must give."""
    (folder / "notes.txt").write_text("not an image")
    (folder / "gone.png").symlink_to(folder / "deleted.png")
    for name in images:
        write_png(folder / name, np.zeros((4, 5, 3), np.uint8))
    return ["notes.txt", "gone.png", *images]


PAIRED_SPLITS = [(layout, split) for layout, splits in LAYOUTS.items() for split, spec in splits.items()
                 if spec.lr_dir is not None]


@pytest.mark.parametrize("layout, split", PAIRED_SPLITS, ids=[f"{a}-{b}" for a, b in PAIRED_SPLITS])
@pytest.mark.parametrize("lr_only", [False, True], ids=["paired", "lr_only"])
def test_what_a_split_does_not_use_is_named_in_a_warning(tmp_path: Path, capsys, layout, split, lr_only) -> None:
    """HR and LR folders of every layout: a non-image file, a broken link, an LR image misnamed (``.jpg``, no
    ``x4``) or with no HR are skipped, each named -- never left out without a word."""
    spec = LAYOUTS[layout][split]
    hr_dir, lr_dir = tmp_path / spec.hr_dir, tmp_path / spec.lr_dir.format(scale=4)
    for stem in ("0801", "0802"):
        make_pair(tmp_path, spec.hr_dir, str(lr_dir.relative_to(tmp_path)), stem, spec.lr_name.replace("{scale}", "4"))
    hr_strays = add_strays(hr_dir)
    misnamed = "0801x4.jpg" if spec.lr_name.endswith("x{scale}.png") else "0801.jpg"
    lr_strays = add_strays(lr_dir, misnamed, *(() if lr_only else (spec.lr_name.format(stem="0899", scale=4),)))
    opened = open_split(tmp_path, split, layout, lr_only=lr_only)
    assert [p.name for p in opened.pairs] == ["0801", "0802"]
    warnings = capsys.readouterr().err
    for name in lr_strays + ([] if lr_only else hr_strays):  # lr_only: the HR folder is not read
        assert name in warnings, (name, warnings)
    assert all(line.startswith("warning: ignoring ") for line in warnings.strip().splitlines())


def test_a_folder_of_images_names_what_it_skips(tmp_path: Path, capsys) -> None:
    write_png(tmp_path / "cat.png", np.zeros((8, 8, 3), np.uint8))
    strays = add_strays(tmp_path)
    for lr_only in (False, True):
        assert [p.name for p in open_split(tmp_path, layout="folder", lr_only=lr_only).pairs] == ["cat"]
        warnings = capsys.readouterr().err
        assert all(name in warnings for name in strays), warnings


def test_missing_and_empty_data_dir(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="does not exist"):
        open_split(tmp_path / "nope")
    with pytest.raises(KitError, match="holds no images"):
        open_split(tmp_path)
    (tmp_path / "DIV2K_valid_HR").mkdir()
    (tmp_path / "DIV2K_valid_LR").mkdir()
    with pytest.raises(KitError, match="no images in .*DIV2K_valid_HR"):
        open_split(tmp_path)


def test_hr_without_lr(tmp_path: Path) -> None:
    make_pair(tmp_path, "DIV2K_valid_HR", "DIV2K_valid_LR", "0801", "{stem}x4.png")
    make_pair(tmp_path, "DIV2K_valid_HR", None, "0802", "")
    with pytest.raises(KitError, match=r"0802\.png has no LR: expected .*0802x4\.png"):
        open_split(tmp_path)


def test_lr_size_not_hr_over_4(tmp_path: Path) -> None:
    make_pair(tmp_path, "HR", None, "a01", "")
    write_png(tmp_path / "LR_bicubic" / "X4" / "a01x4.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(KitError, match=r"a01x4\.png is 5x5 .* needs an x4 LR of 5x4"):
        open_split(tmp_path).pairs[0].load(4)


def test_corrupt_and_truncated_png(tmp_path: Path) -> None:
    make_pair(tmp_path, "HR", "LR_bicubic/X4", "a01", "{stem}x4.png", hr_size=(64, 64))
    lr = tmp_path / "LR_bicubic" / "X4" / "a01x4.png"
    lr.write_bytes(lr.read_bytes()[:40])
    with pytest.raises(KitError, match=r"cannot decode image .*a01x4\.png"):
        open_split(tmp_path).pairs[0].load(4)
    lr.write_bytes(b"this is not a png")
    with pytest.raises(KitError, match=r"a01x4\.png"):
        open_split(tmp_path).pairs[0].load(4)


def test_unknown_layout_or_split(tmp_path: Path) -> None:
    make_pair(tmp_path, "HR", "LR_bicubic/X4", "a01", "{stem}x4.png")
    with pytest.raises(KitError, match="has no 'test' split"):
        open_split(tmp_path, "test")
    with pytest.raises(KitError, match="unknown layout"):
        open_split(tmp_path, layout="div2k")


def test_gray_rgba_and_16bit_are_converted_predictably(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gray = rgb[:, :, 0]
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    np.testing.assert_array_equal(read_rgb(tmp_path / "gray.png"), np.repeat(gray[:, :, None], 3, axis=2))
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 7, np.uint8)], axis=2)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgba.png"), rgb)
    rgb16 = rgb.astype(np.uint16) * 257  # exact 16-bit version of the 8-bit image
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[:, :, ::-1])
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgb16.png"), rgb)
    gray16 = np.array([[0, 128, 129, 65535]], np.uint16)  # 128/257 -> 0, 129/257 -> 1 (round), 65535 -> 255
    cv2.imwrite(str(tmp_path / "gray16.png"), gray16)
    assert read_rgb(tmp_path / "gray16.png")[0, :, 0].tolist() == [0, 0, 1, 255]


def test_lr_only_2024_test_split_without_hr(tmp_path: Path, capsys) -> None:
    """The 2024/2025 test phase: only DIV2K_LSDIR_test_LR exists (with the stray 0900.png of the README tree)."""
    lr_dir = tmp_path / "DIV2K_LSDIR_test_LR"
    for stem in ("0000101", "0901"):
        write_png(lr_dir / f"{stem}x4.png", np.full((4, 5, 3), int(stem[-2:]), np.uint8))
    write_png(lr_dir / "0900.png", np.zeros((4, 5, 3), np.uint8))
    assert detect_layout(tmp_path) == "ntire2024"
    with pytest.raises(KitError, match="DIV2K_LSDIR_test_HR, which does not exist; its LR folder .* with --lr_only"):
        open_split(tmp_path, "test")
    split = open_split(tmp_path, "test", lr_only=True)
    assert "ignoring 1 file(s)" in capsys.readouterr().err and not split.has_hr
    assert [p.name for p in split.pairs] == ["0000101", "0901"]
    for pair in split.pairs:
        assert pair.hr_path is None and pair.lr_path == lr_dir / f"{pair.name}x4.png"
        hr, lr = pair.load_inputs(4)
        assert hr is None and lr.shape == (4, 5, 3) and int(lr[0, 0, 0]) == int(pair.name[-2:])
        with pytest.raises(KitError, match="opened LR-only"):
            pair.load(4)


def test_lr_only_names_follow_each_layout(tmp_path: Path, benchmarks_dir: Path) -> None:
    make_pair(tmp_path / "a", "DIV2K_test_HR", "DIV2K_test_LR", "0901", "{stem}.png")  # 2023 test: no x4 suffix
    assert [p.name for p in open_split(tmp_path / "a", "test", lr_only=True).pairs] == ["0901"]
    set5 = open_split(benchmarks_dir / "Set5", lr_only=True)  # HR present but ignored
    assert [p.name for p in set5.pairs] == [p.name for p in open_split(benchmarks_dir / "Set5").pairs]
    assert not set5.has_hr and all(p.lr_path.name == f"{p.name}x4.png" for p in set5.pairs)
    plain = tmp_path / "photos"  # a plain folder read as LR images
    write_png(plain / "cat.png", np.zeros((7, 9, 3), np.uint8))
    split = open_split(plain, lr_only=True)
    assert split.layout == "folder" and split.pairs[0].lr_path == plain / "cat.png"
    assert split.pairs[0].load_inputs(4)[1].shape == (7, 9, 3)  # not modcropped: the LR is the input
    with pytest.raises(KitError, match="--lr_only needs the LR folder"):
        open_split(tmp_path / "a", "test", layout="ntire2024", lr_only=True)
