"""The online phase's scoring program (``python -m esrkit.submission scoring-program``), run as the platforms run it.

The zip is unpacked into ``program/``, the reference data into ``input/ref``, the upload into ``input/res``; the
``command`` of its ``metadata`` file (read as YAML, as CodaBench's compute worker reads it) has ``$program``,
``$input`` and ``$output`` filled in and runs, from ``program/``, in a fresh virtual environment that holds numpy and
Pillow alone (made once per session; ``$ESRKIT_SCORER_PYTHON`` names another interpreter to make it from, e.g. a
Python 3.8). Its scores are checked against the kit's own: ``esrkit.evaluate`` (test_demo.py's loop, without the
complexity counts) runs two real NTIRE 2025 submissions (teams 07 and 15 of the shared material) on Set5 with SSIM
and saves their SR images; the program scores those images (per image within 1e-3 dB of the official 2025 code's
figures in submissions/README.md too), and the kit's upload zip (``package``'s writer) as it is. Each bad upload is refused with its message and leaves no scores file. The metrics and the image reader are also
compared, in this process, with the kit's own functions on images made here.
"""

from __future__ import annotations

import ast
import html.parser
import importlib.util
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import cv2
import numpy as np
import pytest
from PIL import Image

import esrkit
from esrkit.datasets import modcrop
from esrkit.evaluation import SplitRecord
from esrkit.imageio import read_rgb, write_png
from esrkit.metrics import psnr as kit_psnr
from esrkit.metrics import ssim as kit_ssim
from esrkit.spec import TeamSpec, resolve
from esrkit.submission.__main__ import main
from esrkit.submission.package import README_NAME, readme_text, write_flat_zip
from esrkit.submission.scoring import SCORER
from tests.conftest import SHARED, require, torch_threads

SUBMISSIONS = SHARED / "submissions"
TEAMS = {  # the organisers' instructions (submissions/README.md)
    "07_NanoSR": TeamSpec(model_file=Path("team07_NanoSR.py"), class_name="NanoSR_inference", init_args=(3, 3),
                          data_range=1.0),
    "15_DIPNet_slim_v2": TeamSpec(model_file=Path("team15_DIPNet_slim_v2.py"), class_name="DIPNet_slim_v2",
                                  init_args=(3, 3), init_kwargs={"upscale": 4, "feature_channels": 32}, data_range=1.0),
}
# Per-image Set5 PSNR of the official 2025 code (submissions/README.md), computed on another machine: oneDNN rounds
# a forward differently from CPU to CPU (up to 8e-5 dB seen), so 1e-3 dB, as tests/test_intake.py allows.
OFFICIAL_PSNR = {"07_NanoSR": [32.146828, 32.764364, 27.096131, 29.935612, 29.064598],
                 "15_DIPNet_slim_v2": [32.181653, 32.341268, 26.938754, 29.910315, 29.185881]}
OFFICIAL_TOLERANCE_DB = 1e-3
METRIC_KEYS = ("psnr", "ssim", "psnr_y", "ssim_y")
SMALL = ("img_003", "img_004")  # Set5's butterfly (256x256) and head (280x280): the bad-upload fixtures
OUTPUTS = {"detailed_results.html", "scores.json", "scores.txt"}
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
SCREENSHOT_COPY = Path("/tmp/scoring_detailed_results.png")


# --- the fresh environment, the zips, the platform's run -------------------------------------------


@pytest.fixture(scope="session")
def scorer_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with numpy and Pillow only (pip's own packages aside), made once per session."""
    base = os.environ.get("ESRKIT_SCORER_PYTHON", sys.executable)
    venv = tmp_path_factory.mktemp("scorer_venv") / "venv"
    made = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        pytest.skip(f"python -m venv failed with {base}: {made.stderr.strip()[-300:]}")
    python = venv / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "numpy", "pillow"], capture_output=True,
                         text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"pip cannot install numpy and pillow into a fresh environment here: {pip.stderr.strip()[-300:]}")
    return python


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The scoring programs the tests run, made by the command line: plain, --ssim, --year 2025."""
    folder = tmp_path_factory.mktemp("zips")
    made = {}
    for name, flags in {"plain": [], "ssim": ["--ssim"], "2025": ["--year", "2025"]}.items():
        made[name] = folder / f"scoring_{name}.zip"
        assert main(["scoring-program", "--out", str(made[name]), *flags]) == 0
    return made


Files = dict[str, "Path | bytes"]


def lay_out(folder: Path, files: Files) -> None:
    """``folder``'s files (relative names, folders included): copies of paths, or bytes."""
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)


class Run:
    def __init__(self, root: Path, done: subprocess.CompletedProcess) -> None:
        self.root, self.rc, self.stdout, self.stderr = root, done.returncode, done.stdout, done.stderr
        self.output = root / "output"

    @property
    def written(self) -> set[str]:
        return {p.name for p in self.output.iterdir()}

    def scores(self) -> dict[str, float]:
        return json.loads((self.output / "scores.json").read_text(encoding="utf-8"))

    def page(self) -> str:
        return (self.output / "detailed_results.html").read_text(encoding="utf-8")


def run_platform(root: Path, program_zip: Path, ref: Files, res: Files, python: Path) -> Run:
    """The platform's scoring step: unpack, lay out input/ref and input/res, run the metadata's command."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the metadata file as the platforms do")
    program, inputs, output = root / "program", root / "input", root / "output"
    with zipfile.ZipFile(program_zip) as zf:
        zf.extractall(program)
    lay_out(inputs / "ref", ref)
    (inputs / "res").mkdir(parents=True, exist_ok=True)
    lay_out(inputs / "res", res)
    output.mkdir()
    command = yaml.safe_load((program / "metadata").read_text(encoding="utf-8"))["command"]
    for placeholder, path in (("$program", program), ("$input", inputs), ("$output", output)):
        command = command.replace(placeholder, str(path))
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}
    done = subprocess.run(shlex.split(command), cwd=program, env=env, capture_output=True, text=True, timeout=300)
    return Run(root, done)


def per_image(page: str) -> dict[str, dict[str, float]]:
    """image -> metric -> the exact value the detailed page carries (``data-value``)."""

    class Cells(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.values: dict[str, dict[str, float]] = {}

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "td" and a.get("data-image"):
                self.values.setdefault(a["data-image"], {})[a["data-key"]] = float(a["data-value"])

    cells = Cells()
    cells.feed(page)
    return cells.values


# --- the kit's own numbers on Set5 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def set5(benchmarks_dir: Path) -> Path:
    return benchmarks_dir / "Set5"


@pytest.fixture(scope="module")
def team_runs(tmp_path_factory: pytest.TempPathFactory, set5: Path) -> dict[str, tuple[Path, SplitRecord]]:
    """The kit's evaluation (test_demo.py's loop) of teams 07 and 15 on Set5 with SSIM, saving the SR images:
    key -> (the SR folder, the record)."""
    require(SUBMISSIONS)
    root = tmp_path_factory.mktemp("team_runs")
    runs = {}
    for key, spec in TEAMS.items():
        entry = resolve(replace(spec, model_file=SUBMISSIONS / "models" / spec.model_file))
        with torch_threads(2):
            runs[key] = (root / key, esrkit.evaluate(entry, set5, ssim=True, save_dir=root / key, device="cpu"))
    return runs


def set5_as_kept(set5: Path) -> Files:
    """Set5 as the organisers keep a split: HR/ beside LR_bicubic/X4/ (the benchmark layout)."""
    return {f"{sub}/{p.name}": p for sub in ("HR", "LR_bicubic/X4") for p in sorted((set5 / sub).glob("*.png"))}


@pytest.mark.parametrize("team", list(TEAMS))
def test_scores_equal_the_kits_on_two_teams_outputs(team, team_runs, set5, zips, scorer_python, tmp_path) -> None:
    sr_folder, record = team_runs[team]
    kit = {name: [image.metrics[name] for image in record.images] for name in METRIC_KEYS}
    upload = {p.name: p for p in sorted(sr_folder.glob("*.png"))}
    upload["readme.txt"] = readme_text(0.1, True, False, "").encode()  # the kit's upload carries one
    upload["metadata"] = b"exitCode: 0\n"  # CodaBench's prediction step leaves one beside the files
    run = run_platform(tmp_path, zips["ssim"], set5_as_kept(set5), upload, scorer_python)
    assert run.rc == 0, run.stderr
    assert run.stderr == "" and run.written == OUTPUTS
    scores = run.scores()
    assert list(scores) == [f"valid_ave_{m}" for m in ("psnr", "ssim", "psnr_y", "ssim_y")]
    for name in METRIC_KEYS:
        assert abs(scores[f"valid_ave_{name}"] - record.mean(name)) <= 1e-9, name
    assert scores["valid_ave_psnr"] == record.mean("psnr")  # the same uint8 images, the same float64 sums
    text = dict(line.split(": ") for line in (run.output / "scores.txt").read_text().splitlines())
    assert {k: float(v) for k, v in text.items()} == scores  # CodaLab's file says exactly what CodaBench's does
    images = per_image(run.page())
    assert list(images) == record.names == ["img_001", "img_002", "img_003", "img_004", "img_005"]
    for index, name in enumerate(record.names):
        for metric in METRIC_KEYS:
            assert abs(images[name][metric] - kit[metric][index]) <= 1e-9, (name, metric)
        assert abs(images[name]["psnr"] - OFFICIAL_PSNR[team][index]) <= OFFICIAL_TOLERANCE_DB, name


def test_the_kits_upload_zip_is_scored_as_it_is(team_runs, set5, zips, scorer_python, tmp_path) -> None:
    """The zip ``package`` writes (its writer: flat PNGs named as the HR images, and readme.txt), unpacked as the
    platform unpacks it."""
    sr_folder, record = team_runs["15_DIPNet_slim_v2"]
    out = tmp_path / "team15.zip"
    write_flat_zip(out, sorted(sr_folder.glob("*.png")), {README_NAME: readme_text(0.1, True, False, "DIPNet")})
    with zipfile.ZipFile(out) as zf:
        upload: Files = {name: zf.read(name) for name in zf.namelist()}
    assert sorted(upload) == [f"img_00{i}.png" for i in range(1, 6)] + ["readme.txt"]
    run = run_platform(tmp_path / "platform", zips["plain"], set5_as_kept(set5), upload, scorer_python)
    assert run.rc == 0 and run.stderr == "", run.stderr
    assert run.scores() == {"valid_ave_psnr": record.mean("psnr"), "valid_ave_psnr_y": record.mean("psnr_y")}


def test_the_environment_holds_numpy_and_pillow_alone(scorer_python, zips, tmp_path) -> None:
    """What the scorer ran with: no torch, OpenCV, scipy, scikit-image -- and no kit, from program/."""
    with zipfile.ZipFile(zips["plain"]) as zf:
        zf.extractall(tmp_path)
    probe = ("import importlib.util as u; print([m for m in ('torch', 'cv2', 'scipy', 'skimage', 'esrkit') "
             "if u.find_spec(m)], [m for m in ('numpy', 'PIL') if u.find_spec(m)])")
    done = subprocess.run([str(scorer_python), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.stdout.strip() == "[] ['numpy', 'PIL']", done.stderr


# --- bad uploads: each refused with its message, no scores file -------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, set5: Path) -> dict[str, Any]:
    """Two Set5 HR images and SR images of theirs (the HR, a little changed: a finite PSNR), as files."""
    folder = tmp_path_factory.mktemp("small")
    hr = {name: set5 / "HR" / f"{name}.png" for name in SMALL}
    sr = {}
    for name, path in hr.items():
        image = modcrop(read_rgb(path), 4).astype(np.int16)
        image[::7, ::5] += 9
        sr[name] = folder / f"{name}.png"
        write_png(sr[name], np.clip(image, 0, 255).astype(np.uint8))
    return {"hr": hr, "sr": sr, "ref": {f"{name}.png": path for name, path in hr.items()}}


def png_bytes(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny file whose PNG header claims ``width`` x ``height`` RGB pixels."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def zipped(files: dict[str, Path]) -> bytes:
    path = Path(next(iter(files.values()))).parent / "inner.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, source in files.items():
            zf.write(source, name)
    return path.read_bytes()


def both(sr: dict[str, Path], **changed: Path | bytes | None) -> Files:
    """The two SR images under their names, with some replaced (None: left out)."""
    files: Files = {f"{name}.png": path for name, path in sr.items()}
    for name, content in changed.items():
        files.pop(f"{name}.png")
        if content is not None:
            files[f"{name}.png"] = content
    return files


BAD_UPLOADS: dict[str, tuple[Callable[[dict[str, Path]], Files], list[str]]] = {
    "missing": (lambda sr: both(sr, img_004=None),
                ["1 of the 2 HR images have no SR image: img_004.png"]),
    "extra": (lambda sr: {**both(sr), "img_006.png": sr["img_003"]},
              ["1 PNG file(s) match no HR image of input/ref: img_006.png", "img_003.png ... img_004.png (2 files)"]),
    "named like the LR": (lambda sr: {"img_003x4.png": sr["img_003"], "img_004.png": sr["img_004"]},
                          ["have no SR image: img_003.png", "img_003x4.png named like the LR files: name each SR "
                           "image as its HR image (img_003.png)"]),
    "truncated": (lambda sr: both(sr, img_004=sr["img_004"].read_bytes()[:3000]),
                  ["img_004.png is damaged or truncated"]),
    "not a PNG": (lambda sr: both(sr, img_004=cv2.imencode(".jpg", read_rgb(sr["img_004"]))[1].tobytes()),
                  ["img_004.png is not a PNG file (a JPEG file): save it as PNG"]),
    "a JPEG": (lambda sr: {"img_003.png": sr["img_003"], "img_004.jpg": sr["img_004"]},
               ["img_004.jpg is not a PNG file: SR images are lossless PNG, named as their HR image (img_004.png)"]),
    "wrong size": (lambda sr: both(sr, img_004=png_bytes(np.zeros((70, 70, 3), np.uint8))),
                   ["img_004.png is 70x70 but must be 280x280: the size of HR img_004.png modcropped to a multiple "
                    "of 4 (x4 of its 70x70 LR)"]),
    "decompression bomb": (lambda sr: both(sr, img_004=png_claiming(100_000, 100_000)),
                           ["img_004.png is 100000x100000 but must be 280x280", "refused before decoding"]),
    "16-bit": (lambda sr: both(sr, img_004=png_bytes(np.full((280, 280, 3), 40000, np.uint16))),
               ["img_004.png is a 16-bit PNG: the challenge's SR images are 8-bit"]),
    "one name twice": (lambda sr: {**both(sr), "img_004.PNG": sr["img_004"]},
                       ["img_004.PNG, img_004.png are one image name twice: keep one"]),
    "empty": (lambda sr: {}, ["the upload holds no PNG image (it is empty)"]),
    "a readme alone": (lambda sr: {"readme.txt": b"runtime per image [s] : 0.1\n"},
                       ["the upload holds no PNG image (only readme.txt): upload one zip of the SR images, named as "
                        "the HR images (img_003.png, ...)"]),
    "zip in a zip": (lambda sr: {"results.zip": zipped({f"{n}.png": p for n, p in sr.items()})},
                     ["the upload holds an archive (results.zip) where the images belong: zip the PNG files "
                      "themselves, not a zip inside a zip"]),
    "two folders deep": (lambda sr: {f"out/sr/{n}.png": p for n, p in sr.items()},
                         ["the upload's files are two folders deep (out/sr/)"]),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_a_bad_upload_is_refused_with_its_message_and_no_score(case, small, zips, scorer_python, tmp_path) -> None:
    make, messages = BAD_UPLOADS[case]
    run = run_platform(tmp_path, zips["plain"], small["ref"], make(small["sr"]), scorer_python)
    assert run.rc == 2, (run.stdout, run.stderr)
    assert run.stderr.startswith("error: ") and "no score was written" in run.stderr.splitlines()[0]
    assert "Traceback" not in run.stderr
    for message in messages:
        assert message in run.stderr, run.stderr
    assert run.written == set()


def test_the_reference_data_are_checked_too(small, zips, scorer_python, tmp_path) -> None:
    upload = both(small["sr"])
    two_splits = {f"DIV2K_LSDIR_{split}_HR/{n}": p for split in ("valid", "test") for n, p in small["ref"].items()}
    run = run_platform(tmp_path / "a", zips["2025"], two_splits, upload, scorer_python)
    assert run.rc == 2 and "input/ref holds several splits (DIV2K_LSDIR_test_HR, DIV2K_LSDIR_valid_HR)" in run.stderr
    other_year = {f"DIV2K/DIV2K_valid_HR/{n}": p for n, p in small["ref"].items()}  # one enclosing folder
    run = run_platform(tmp_path / "b", zips["2025"], other_year, upload, scorer_python)
    assert run.rc == 2 and ("input/ref/DIV2K holds DIV2K_valid_HR/, the HR folder of the ntire2023 layout (NTIRE "
                            "2022-2023): this program scores NTIRE 2025 Efficient SR (its reference folders: "
                            "DIV2K_LSDIR_test_HR/, DIV2K_LSDIR_valid_HR/)") in run.stderr
    unknown = {f"{folder}/{n}": p for folder in ("hr", "lr") for n, p in small["ref"].items()}
    run = run_platform(tmp_path / "d", zips["2025"], unknown, upload, scorer_python)
    assert run.rc == 2 and ("input/ref holds no HR images: expected one of DIV2K_LSDIR_test_HR/, "
                            "DIV2K_LSDIR_valid_HR/ or the HR PNG files themselves; found hr/, lr/") in run.stderr
    bomb = {"img_003.png": small["hr"]["img_003"], "img_004.png": png_claiming(20_000, 20_000)}
    run = run_platform(tmp_path / "c", zips["plain"], bomb, upload, scorer_python)
    assert run.rc == 2 and "input/ref/img_004.png claims 20000x20000 pixels, above this program's limit" in run.stderr
    assert run.written == set()


# --- uploads that are scored, and how ---------------------------------------------------------------


def test_one_folder_level_and_stray_files_are_accepted(small, zips, scorer_python, tmp_path) -> None:
    """The PNGs inside one folder (a zip of the folder); the platform's and the kit's files said nothing of;
    other files are warned about, named on the detailed page (escaped), and never scored."""
    flat = run_platform(tmp_path / "flat", zips["plain"], small["ref"], both(small["sr"]), scorer_python)
    assert flat.rc == 0 and flat.stderr == ""
    stray = "<img src=x onerror=alert(1)>.txt"
    upload: Files = {f"results/{n}.png": p for n, p in small["sr"].items()}
    upload.update({"readme.txt": b"x", "metadata": b"exitCode: 0\n", ".DS_Store": b"x", "__MACOSX/._img.png": b"x",
                   "results/notes.txt": b"x", f"results/{stray}": b"x"})
    run = run_platform(tmp_path / "nested", zips["plain"], small["ref"], upload, scorer_python)
    assert run.rc == 0, run.stderr
    assert run.stderr == (f"warning: Ignored 2 file(s) and folder(s) that are not SR images: results/{stray}, "
                          "results/notes.txt.\n")
    assert run.scores() == flat.scores()
    page = run.page()
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page and "<img" not in page
    assert "The images were found in the upload&#x27;s folder results/." in page


def test_grey_rgba_and_palette_uploads_are_read_as_the_kit_reads_them(small, zips, scorer_python, tmp_path) -> None:
    rgb = read_rgb(small["sr"]["img_003"])
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 77, np.uint8)])  # BGRA for OpenCV
    folder = tmp_path / "files"
    folder.mkdir()
    Image.fromarray(read_rgb(small["sr"]["img_004"])).convert("P", palette=Image.Palette.ADAPTIVE).save(
        folder / "img_004.png")
    for variant, image in {"grey": grey, "rgba": rgba}.items():
        (folder / f"{variant}.png").write_bytes(png_bytes(image))
        run = run_platform(tmp_path / variant, zips["plain"], small["ref"],
                           {"img_003.png": folder / f"{variant}.png", "img_004.png": folder / "img_004.png"},
                           scorer_python)
        assert run.rc == 0, run.stderr
        images = per_image(run.page())
        for name, path in (("img_003", folder / f"{variant}.png"), ("img_004", folder / "img_004.png")):
            hr = modcrop(read_rgb(small["hr"][name]), 4)
            assert images[name]["psnr"] == kit_psnr(read_rgb(path), hr, 4), (variant, name)


def test_a_year_names_its_splits_and_says_its_bar(small, zips, scorer_python, tmp_path) -> None:
    kept = {f"DIV2K_LSDIR_test_{kind}/{n}": p for kind in ("HR", "LR") for n, p in small["ref"].items()}
    run = run_platform(tmp_path, zips["2025"], kept, both(small["sr"]), scorer_python)
    assert run.rc == 0, run.stderr
    assert list(run.scores()) == ["test_ave_psnr", "test_ave_psnr_y"]
    assert ("The NTIRE 2025 PSNR bar (test 26.99 dB) is defined on DIV2K_LSDIR valid / test (200 images each); "
            "this reference holds 2 images, so it is not applied.") in run.page()


def test_the_detailed_page_in_a_browser(small, zips, scorer_python, tmp_path) -> None:
    """Opened from disk in headless Chromium: the numbers and the escaped file name are shown, nothing is run or
    fetched (its policy allows inline style only). The screenshot is kept for a person to look at."""
    browser = next((b for b in BROWSERS if Path(b).is_file()), None)
    if browser is None:
        pytest.skip(f"no Chromium ({' / '.join(BROWSERS)}): apt-get install chromium (.ci/run does it as root)")
    stray = "<img src=x onerror=alert(1)>.txt"
    run = run_platform(tmp_path, zips["ssim"], small["ref"], {**both(small["sr"]), stray: b"x"}, scorer_python)
    assert run.rc == 0, run.stderr
    page = run.output / "detailed_results.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,900"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    if dom.returncode != 0 or "<html" not in dom.stdout:
        pytest.skip(f"Chromium ({browser}) did not render the page: {dom.stderr.strip()[-200:]}")
    assert "<img" not in dom.stdout and "&lt;img src=x onerror=alert(1)&gt;.txt" in dom.stdout
    scores = run.scores()
    for name in METRIC_KEYS:
        value = scores[f"valid_ave_{name}"]
        assert f'data-value="{value!r}">{value:.{4 if "ssim" in name else 2}f}</td>' in dom.stdout
    shot = tmp_path / "detailed_results.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copyfile(shot, SCREENSHOT_COPY)


# --- the scorer's parts against the kit's, in this process --------------------------------------------


@pytest.fixture(scope="module")
def scorer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("esrkit_scorer_under_test", SCORER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("shape", [(48, 40, 3), (64, 97, 3)])
def test_every_metric_equals_the_kits(scorer, shape) -> None:
    rng = np.random.default_rng(sum(shape))
    hr = rng.integers(0, 256, shape, dtype=np.uint8)
    sr = np.clip(hr.astype(np.int16) + rng.integers(-12, 13, shape), 0, 255).astype(np.uint8)
    for on_y in (False, True):
        assert scorer.psnr(sr, hr, 4, on_y) == kit_psnr(sr, hr, 4, on_y)
        assert abs(scorer.ssim(sr, hr, 4, on_y) - kit_ssim(sr, hr, 4, on_y)) <= 1e-12
    assert scorer.psnr(hr, hr, 4) == kit_psnr(hr, hr, 4) == float("inf")


def test_the_reader_decodes_as_the_kits(scorer, tmp_path) -> None:
    """Grey (8 and 1 bit), grey+alpha, RGBA, palette (8 and 4 bit, with transparency): the pixels esrkit's
    OpenCV-based reader gives."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    images = {
        "grey": Image.fromarray(rgb[:, :, 1]),
        "bilevel": Image.fromarray(rgb[:, :, 0] > 127).convert("1"),
        "grey_alpha": Image.fromarray(np.dstack([rgb[:, :, 2], rgb[:, :, 0]]), "LA"),
        "rgba": Image.fromarray(np.dstack([rgb, rgb[:, :, 0]]), "RGBA"),
        "palette": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "palette_4bit": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
    }
    for name, image in images.items():
        path = tmp_path / f"{name}.png"
        options = {"bits": 4} if name == "palette_4bit" else {"transparency": 0} if name == "palette" else {}
        image.save(path, **options)
        decoded = scorer.decode_rgb(path, path.name)
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, read_rgb(path)), name


# --- the zip, its command line, its writes -------------------------------------------------------


def test_the_zip_holds_the_program_its_command_and_the_years_choices(zips) -> None:
    with zipfile.ZipFile(zips["2025"]) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata", "score.py"]
        assert zf.read("score.py") == SCORER.read_bytes()  # zipped as it is
        metadata = zf.read("metadata").decode()
        config = json.loads(zf.read("config.json"))
    assert metadata.splitlines()[0] == "command: python3 $program/score.py $input $output"
    assert config["year"] == 2025 and config["scale"] == 4
    assert config["reference_folders"] == {"DIV2K_LSDIR_valid_HR": "valid", "DIV2K_LSDIR_test_HR": "test"}
    assert config["bars"] == {"valid": 26.90, "test": 26.99} and config["set_sizes"] == {"valid": 200, "test": 200}
    assert [m["name"] for m in config["metrics"]] == ["psnr", "psnr_y"]
    with zipfile.ZipFile(zips["ssim"]) as zf:
        assert [m["name"] for m in json.loads(zf.read("config.json"))["metrics"]] == ["psnr", "ssim", "psnr_y",
                                                                                       "ssim_y"]


def test_the_scorer_is_python_3_8_with_numpy_and_pillow_alone() -> None:
    tree = ast.parse(SCORER.read_text(encoding="utf-8"), feature_version=(3, 8))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module}
    assert imported - set(sys.stdlib_module_names) == {"numpy", "PIL"}


def test_the_command_line_checks_out_and_replaces_a_zip_whole(tmp_path, capsys) -> None:
    assert main(["scoring-program", "--out", str(tmp_path / "scoring.tar")]) == 2
    assert "must be a .zip file" in capsys.readouterr().err
    out = tmp_path / "scoring.zip"
    out.write_bytes(b"previous program")
    assert main(["scoring-program", "--out", str(out), "--year", "2023"]) == 0
    printed = capsys.readouterr().out
    assert "key: valid_ave_psnr" in printed and "key: hybrid_test_ave_psnr" in printed
    with zipfile.ZipFile(out) as zf:
        assert json.loads(zf.read("config.json"))["reference_folders"]["LSDIR_DIV2K_test_HR"] == "hybrid_test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scoring.zip"]  # no temporary file left


def test_scores_appear_whole_or_not_at_all(scorer, tmp_path, monkeypatch) -> None:
    """The last rename fails: the files already renamed are taken back, no temporary file is left."""
    real_replace = os.replace

    def replace(src: str, dst: Path) -> None:
        if Path(dst).name == "scores.json":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(scorer.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        scorer.write_outputs(tmp_path, {name: "x" for name in scorer.OUTPUT_NAMES})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(scorer.os, "replace", real_replace)
    scorer.write_outputs(tmp_path, {name: name for name in scorer.OUTPUT_NAMES})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
