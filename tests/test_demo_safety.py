"""test_demo.py never loses a user's work: problems are found before any work, SR images and results are
replaced only whole, silent failures are errors, Ctrl-C is one line. Each case here failed on the kit of
commit 708f5bb (the state before this file existed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import test_demo
from esrkit import evaluation
from esrkit.datasets import open_split
from esrkit.imageio import write_png
from esrkit.registry import get_entry


@pytest.fixture()
def mini(two_image_benchmark: Path) -> Path:
    return two_image_benchmark


def weights(tmp_path: Path, seed: int, scale: float = 1.0) -> Path:
    """MLRN-entire weights the test makes itself (seeded init, optionally scaled), not a trained model."""
    torch.manual_seed(seed)
    path = tmp_path / f"mlrn_seed{seed}_x{scale}.pth"
    torch.save({k: v * scale for k, v in get_entry("MLRN-entire").build().state_dict().items()}, path)
    return path


def run(tmp_path: Path, *args: str) -> int:
    return test_demo.main(["--results_dir", str(tmp_path / "out"), "--save_dir", str(tmp_path / "sr"), "--runs", "0",
                           "--quiet", *args])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_corrupt_results_json_stops_the_run_before_any_work(tmp_path, mini, capsys, monkeypatch) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text('{"00_A": ')
    evaluated = []
    monkeypatch.setattr(evaluation.Evaluator, "run", lambda *a, **k: evaluated.append(1))
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 0))) == 2
    assert "results.json is not valid JSON" in one_error_line(capsys) and evaluated == []
    assert (tmp_path / "out" / "results.json").read_text() == '{"00_A": '


def test_a_bad_second_image_leaves_the_earlier_sr_images_untouched(tmp_path, mini, capsys) -> None:
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 0))) == 0
    first = tmp_path / "sr" / "10_MLRN-entire" / "valid" / "img_002.png"
    before = first.read_bytes()
    (mini / "LR_bicubic" / "X4" / "img_005x4.png").write_bytes(b"truncated")
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 1))) == 2  # other weights
    assert "cannot decode image" in capsys.readouterr().err
    assert first.read_bytes() == before  # the new run's img_002 (other weights) never replaced it
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["10_MLRN-entire"]  # no staging folder left


def test_a_second_run_replaces_only_the_kits_own_images_of_an_sr_folder(tmp_path, mini) -> None:
    """A note someone put into the SR folder was deleted with the images by the next run on the same data: now only
    the images the kit wrote there are replaced."""
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 0))) == 0
    folder = tmp_path / "sr" / "10_MLRN-entire" / "valid"
    (folder / "important.txt").write_text("the organiser's note\n")
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 1))) == 0
    assert (folder / "important.txt").read_text() == "the organiser's note\n"
    assert sorted(p.name for p in folder.iterdir()) == ["img_002.png", "img_005.png", "important.txt"]


def test_images_with_the_same_name_are_an_error_naming_both(tmp_path, capsys) -> None:
    folder = tmp_path / "photos"
    write_png(folder / "a.png", np.zeros((96, 96, 3), np.uint8))
    (folder / "a.jpg").write_bytes((folder / "a.png").read_bytes())
    assert run(tmp_path, "--data_dir", str(folder), "--weights", str(weights(tmp_path, 0))) == 2
    line = one_error_line(capsys)
    assert "a.jpg" in line and "a.png" in line and "same name 'a'" in line


def test_weights_full_of_nan_are_an_error_not_a_psnr(tmp_path, mini, capsys) -> None:
    nan = weights(tmp_path, 0, scale=float("nan"))
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(nan)) == 2
    line = one_error_line(capsys)
    assert f"{nan}" in line and "non-finite value(s) (NaN/Inf) on img_002" in line
    assert not (tmp_path / "out" / "results.json").exists() and not (tmp_path / "sr" / "10_MLRN-entire" / "valid").exists()


def test_a_broken_link_in_the_data_folder_is_named(tmp_path, mini, capsys) -> None:
    (mini / "HR" / "img_009.png").symlink_to(tmp_path / "gone.png")
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 0))) == 0
    err = capsys.readouterr().err
    assert "ignoring 1 broken link(s) in" in err and "img_009.png" in err


def test_odd_entries_of_an_existing_results_json_are_kept(tmp_path, mini) -> None:
    (tmp_path / "out").mkdir()
    odd = {"00_Old": {"num_conv": 43.0, "valid_ave_psnr": "n/a"}, "01_Notes": ["hand", "written"]}
    (tmp_path / "out" / "results.json").write_text(json.dumps(odd))
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 0))) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {k: data[k] for k in odd} == odd and "10_MLRN-entire" in data
    rows = [line.split("\t") for line in (tmp_path / "out" / "results.txt").read_text().splitlines()[1:]]
    assert [r[0].strip() for r in rows] == ["00_Old", "01_Notes", "10_MLRN-entire"]
    assert rows[0][7].strip() == "-" and rows[0][1].strip() == "-"


def test_ctrl_c_is_one_line_and_keeps_everything(tmp_path, mini, capsys, monkeypatch) -> None:
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 0))) == 0
    log = tmp_path / "out" / "esrkit.log"  # the run log only grows: every run is appended to it
    kept = {p: p.read_bytes() for p in sorted((tmp_path / "out").iterdir()) + sorted((tmp_path / "sr").rglob("*.png"))
            if p != log}
    logged = log.read_bytes()
    capsys.readouterr()

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation.Evaluator, "_warm_pass", interrupted)
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(weights(tmp_path, 1)), "--runs", "1") == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted: results.json, results.txt and earlier SR images were not changed"]
    assert {p: p.read_bytes() for p in kept} == kept and sorted((tmp_path / "sr").iterdir()) == [tmp_path / "sr" / "10_MLRN-entire"]
    assert log.read_bytes().startswith(logged)


def test_unwritable_outputs_stop_before_the_model_is_loaded(tmp_path, mini, capsys, monkeypatch) -> None:
    (tmp_path / "a_file").write_text("x")
    loaded = []
    monkeypatch.setattr("esrkit.entry.Entry.load", lambda *a, **k: loaded.append(1))
    for flag in ("--save_dir", "--results_dir"):
        assert test_demo.main(["--data_dir", str(mini), flag, str(tmp_path / "a_file" / "sub"), "--quiet"]) == 2
        assert flag in one_error_line(capsys)
    assert loaded == []


def test_progress_is_shown_on_a_terminal_for_every_pass(tmp_path, mini) -> None:
    """The challenge pass and the warm pass each show a bar (on a terminal; quiet otherwise)."""
    import io

    from esrkit.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    model = get_entry("MLRN-entire").build()
    split = open_split(mini)
    evaluation.Evaluator(model, scale=4, data_range=255.0, device=torch.device("cpu"), warm_runs=1,
                         progress=Progress(stream=screen)).run(split)
    text = screen.getvalue()
    assert "valid (sequential)" in text and "valid warm timing (x1)" in text and "2/2" in text
    quiet = Terminal()
    evaluation.Evaluator(model, scale=4, data_range=255.0, device=torch.device("cpu"),
                         progress=Progress(enabled=False, stream=quiet)).run(split)
    assert quiet.getvalue() == ""


def test_an_infinite_output_is_an_error_and_keeps_the_earlier_entry(tmp_path, mini, capsys) -> None:
    """The upsampler's bias at +inf: every output pixel is Inf. Clamping first would make a 3.7 dB "PSNR" of it."""
    good = get_entry("MLRN-entire").default_weights_path()
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(good)) == 0
    before = (tmp_path / "out" / "results.json").read_bytes()
    state = torch.load(good, weights_only=True)
    state["upsampler.0.bias"] = torch.full_like(state["upsampler.0.bias"], float("inf"))
    torch.save(state, tmp_path / "inf.pth")
    capsys.readouterr()
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(tmp_path / "inf.pth")) == 2
    assert "non-finite value(s) (NaN/Inf) on img_002" in one_error_line(capsys)
    assert (tmp_path / "out" / "results.json").read_bytes() == before


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header (and CRCs) claiming ``width`` x ``height`` pixels, with next to no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("command", ["test_demo", "check", "batch"])
def test_a_png_whose_header_claims_100000x100000_is_one_line(tmp_path, mini, capsys, command) -> None:
    (mini / "HR" / "img_005.png").write_bytes(png_claiming(100_000, 100_000))
    if command == "test_demo":
        code = run(tmp_path, "--data_dir", str(mini))
    else:
        from esrkit.submission.__main__ import main as submission

        spec = tmp_path / "spec.toml"
        spec.write_text('[[team]]\nentry = "MLRN-entire"\n')
        code = submission(["check", "--model_id", "MLRN-entire", "--baseline", "MLRN-entire", "--data_dir", str(mini), "--quiet"] if command == "check"
                          else ["batch", "--spec", str(spec), "--data_dir", str(mini), "--results_dir",
                                str(tmp_path / "out"), "--quiet"])
    assert code == 2
    line = one_error_line(capsys)
    assert "img_005.png is 100000x100000" in line and "ESRKIT_MAX_IMAGE_PIXELS" in line


def test_a_corrupt_last_image_is_found_before_the_model_loads(tmp_path, mini, capsys, monkeypatch) -> None:
    (mini / "LR_bicubic" / "X4" / "img_005x4.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    loaded = []
    monkeypatch.setattr(type(get_entry("MLRN-entire")), "load", lambda *a, **k: loaded.append(1))
    assert run(tmp_path, "--data_dir", str(mini)) == 2
    assert "cannot decode image" in one_error_line(capsys) and loaded == []


@pytest.fixture()
def other_data(tmp_path: Path, benchmarks_dir: Path) -> Path:
    """A second one-image benchmark set whose image has the same name as one of ``mini``'s (img_002), other pixels."""
    from tests.conftest import copy_benchmark

    return copy_benchmark(tmp_path / "Set14mini", benchmarks_dir / "Set14", ("img_002",))


def test_a_run_on_other_data_never_replaces_an_entry_or_its_sr_images_silently(tmp_path, mini, other_data, capsys) -> None:
    good = str(get_entry("MLRN-entire").default_weights_path())
    assert run(tmp_path, "--data_dir", str(mini), "--weights", good) == 0
    results, sr = tmp_path / "out" / "results.json", tmp_path / "sr" / "10_MLRN-entire" / "valid"
    before, image = results.read_bytes(), (sr / "img_002.png").read_bytes()
    capsys.readouterr()
    assert run(tmp_path, "--data_dir", str(other_data), "--weights", good) == 2
    line = one_error_line(capsys)
    assert "already holds 10_MLRN-entire measured on" in line and str(mini.resolve()) in line and "--replace" in line
    assert results.read_bytes() == before and (sr / "img_002.png").read_bytes() == image
    # the same data again replaces them, as the official kit does; --replace replaces them knowingly
    assert run(tmp_path, "--data_dir", str(mini), "--weights", good) == 0
    assert run(tmp_path, "--data_dir", str(other_data), "--weights", good, "--replace") == 0
    entry = json.loads(results.read_text())["10_MLRN-entire"]
    assert entry["data_dir"] == str(other_data) and entry["valid_images"] == ["img_002"]
    assert sorted(p.name for p in sr.iterdir()) == ["img_002.png"] and (sr / "img_002.png").read_bytes() != image


def test_an_sr_folder_of_another_run_is_never_mixed_into(tmp_path, mini, other_data, capsys) -> None:
    """Results in two folders, SR images in one: the SR folder's own marker stops the second run."""
    good = str(get_entry("MLRN-entire").default_weights_path())
    assert run(tmp_path, "--data_dir", str(mini), "--weights", good) == 0
    capsys.readouterr()
    code = test_demo.main(["--results_dir", str(tmp_path / "out2"), "--save_dir", str(tmp_path / "sr"), "--runs", "0",
                           "--quiet", "--data_dir", str(other_data), "--weights", good])
    assert code == 2 and "holds the SR images of a run on" in one_error_line(capsys)
    assert sorted(p.name for p in (tmp_path / "sr" / "10_MLRN-entire" / "valid").iterdir()) == ["img_002.png",
                                                                                             "img_005.png"]


def test_a_full_disk_at_the_final_write_prints_what_was_measured(tmp_path, mini, capsys, monkeypatch) -> None:
    from esrkit import results as results_module
    from esrkit.errors import KitError

    def no_space(files):  # noqa: ANN001
        raise KitError(f"cannot write {next(iter(files))}: No space left on device; choose another path")

    monkeypatch.setattr(results_module, "replace_together", no_space)
    assert run(tmp_path, "--data_dir", str(mini), "--weights", str(get_entry("MLRN-entire").default_weights_path())) == 2
    out, err = capsys.readouterr()
    assert "No space left on device" in err and not (tmp_path / "out" / "results.json").exists()
    printed = json.loads(out[out.index("(JSON):\n") + len("(JSON):\n"):])["10_MLRN-entire"]
    assert printed["valid_images"] == ["img_002", "img_005"] and len(printed["valid_psnr"]) == 2
    assert printed["valid_ave_psnr"] > 25 and "Team/entry" in out  # the summary row too


def test_off_a_terminal_every_image_is_a_line_and_the_run_log_keeps_them(tmp_path, mini, capsys) -> None:
    """With stderr not a terminal (a log file, a pipe, nohup), B100 ran 8 minutes with no output; the official kit
    keeps a per-image log. Now: one plain line per image, and esrkit.log in the results folder."""
    good = str(get_entry("MLRN-entire").default_weights_path())
    assert test_demo.main(["--results_dir", str(tmp_path / "out"), "--no_save", "--runs", "0", "--data_dir", str(mini),
                           "--weights", good]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith("valid (sequential) ")]
    assert [line.split(":")[0] for line in lines] == ["valid (sequential) 1/2", "valid (sequential) 2/2"]
    assert lines[0].split(": ", 1)[1].startswith("img_002: ") and " dB, " in lines[0] and "\r" not in "".join(err)
    log = (tmp_path / "out" / "esrkit.log").read_text().splitlines()
    assert "run: " in log[0] and "10_MLRN-entire on " in log[0] and str(mini.resolve()) in log[0]
    assert any("valid (sequential) 2/2: img_005: " in line for line in log)
    assert "10_MLRN-entire valid: 2 images, PSNR " in log[-2]


def test_a_name_never_leads_the_sr_folder_out_of_save_dir(tmp_path, mini) -> None:
    """``--name "../../../victim"`` made the SR folder ``trav/sr4/07_../../../victim`` = ``trav/victim``, whose
    ``valid/`` was replaced (its files deleted), exit 0. The name is kept for display; the key spells it safely."""
    from tests.conftest import toy_team

    team = toy_team(tmp_path, "team07_Toy.py")
    victim = tmp_path / "trav" / "victim" / "valid" / "important.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("the user's own file")
    code = test_demo.main(["--model_file", str(team), "--data_range", "1.0", "--name", "../../../victim",
                           "--data_dir", str(mini), "--save_dir", str(tmp_path / "trav" / "sr4"),
                           "--results_dir", str(tmp_path / "out"), "--runs", "0", "--quiet"])
    assert code == 0 and victim.read_text() == "the user's own file"
    assert sorted(p.name for p in (tmp_path / "trav").iterdir()) == ["sr4", "victim"]
    assert sorted(p.name for p in (tmp_path / "trav" / "sr4" / "07_victim" / "valid").glob("*.png")) == [
        "img_002.png", "img_005.png"]
    record = json.loads((tmp_path / "out" / "results.json").read_text())["07_victim"]
    assert record["display_name"] == "../../../victim"
