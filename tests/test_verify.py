"""``verify`` and ``batch --verify_uploads``: a team's uploaded SR images against what its code reproduces, confined.

Three toy teams (the conftest's network: A and C with its seeded weights, B with other weights -- another team's
model) on two Set5 images. The uploads are made as teams make them: the kit's ``package`` command (a zip), a
batch's saved SR images (a folder), and, written here, the same network run as an x8 self-ensemble. One confined
batch with ``--verify_uploads`` (A: its own zip, B: A's images, C: none) is shared by most tests; the ``verify``
command reproduces a team confined, as that batch does. Where bubblewrap cannot be had, the teams run unconfined
(said in their entries) and the sandbox's own tests skip, saying why.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from esrkit.digests import entry_digest
from esrkit.errors import KitError
from esrkit.imageio import read_rgb, tensor_to_uint8, uint8_to_tensor, write_png
from esrkit.results import ResultsFiles, render_results_txt
from esrkit.sandbox import Sandbox, SandboxUnavailable
from esrkit.submission.__main__ import main
from esrkit.submission.reply import Expectation, accept
from esrkit.submission.status import amend_entry, changed_entries
from esrkit.submission.verify import compare_upload
from esrkit.verdicts import VERIFICATION_KEY
from tests.conftest import TOY_NET, copy_benchmark, toy_team

try:
    Sandbox.find()
    NO_SANDBOX = ""
except SandboxUnavailable as exc:
    NO_SANDBOX = str(exc)

NAMES = ("img_002", "img_005")
SPEC = "".join(f"[[team]]\nteam = {n}\nmodel_file = \"models/team0{n}_Toy{x}.py\"\nclass_name = \"Toy\"\n"
               f"data_range = 1.0\n\n" for n, x in ((1, "A"), (2, "B"), (3, "C")))


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([*argv, "--device", "cpu", "--quiet"])
    return rc, out.getvalue(), err.getvalue()


def confinement() -> list[str]:
    """Confined where bubblewrap can be had (as the organisers run it), else said and unconfined."""
    return [] if not NO_SANDBOX else ["--unconfined"]


def toy(weights: Path) -> torch.nn.Module:
    namespace: dict[str, Any] = {}
    exec(TOY_NET, namespace)
    net = namespace["Toy"]()
    net.load_state_dict(torch.load(weights))
    return net.eval()


def unzip(path: Path, folder: Path) -> Path:
    with zipfile.ZipFile(path) as zf:
        zf.extractall(folder)
    (folder / "readme.txt").unlink(missing_ok=True)
    return folder


def zip_folder(folder: Path, out: Path, inside: str = "") -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for png in sorted(folder.glob("*.png")):
            zf.write(png, arcname=inside + png.name)
    return out


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory, benchmarks_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("verify")
    data = copy_benchmark(root / "Set5two", benchmarks_dir / "Set5", NAMES)
    for name in ("team01_ToyA.py", "team02_ToyB.py", "team03_ToyC.py"):
        toy_team(root, name)
    torch.manual_seed(1)  # B: the toy network with other weights -- another team's model
    namespace: dict[str, Any] = {}
    exec(TOY_NET, namespace)
    torch.save(namespace["Toy"]().state_dict(), root / "model_zoo" / "team02_ToyB.pth")
    spec = root / "teams.toml"
    spec.write_text(SPEC)
    packages = {}
    for team in (1, 2):  # each team's upload, as the kit's package command writes it
        packages[team] = root / f"package{team}.zip"
        rc, out, err = cli("package", "--spec", str(spec), "--team", str(team), "--data_dir", str(data),
                           "--out", str(packages[team]))
        assert rc == 0, out + err
    uploads = root / "uploads"
    uploads.mkdir()
    shutil.copy(packages[1], uploads / "01_ToyA.zip")  # A: its own images
    unzip(packages[1], uploads / "team02")  # B: A's images (not what its code gives); C: no upload
    results = root / "results"
    rc, out, err = cli("batch", "--spec", str(spec), "--data_dir", str(data), "--results_dir", str(results),
                       "--save_dir", str(root / "sr"), "--verify_uploads", str(uploads), *confinement())
    return dict(root=root, data=data, spec=spec, packages=packages, results=results, sr=root / "sr", rc=rc, out=out,
                err=err)


def reproduced(intake: dict[str, Any], key: str) -> Path:
    return intake["sr"] / key / "valid"


# --- the verify command: reproduced confined, then compared ---------------------------------------------------------


def test_a_teams_own_package_zip_passes_as_identical(intake) -> None:
    rc, out, err = cli("verify", "--spec", str(intake["spec"]), "--team", "1", "--upload", str(intake["packages"][1]),
                       "--data_dir", str(intake["data"]), *confinement())
    assert rc == 0, out + err
    assert out.strip().splitlines()[-1] == (f"01_ToyA: upload {intake['packages'][1]}: identical: all 2 images equal the "
                                            f"reproduced ones, pixel for pixel")
    assert ("the team's code runs confined" in err) == (not NO_SANDBOX)


def test_one_image_replaced_is_named_and_recorded_in_the_teams_entry(intake, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(intake["results"], results)
    before_txt = (results / "results.txt").read_text()
    upload = tmp_path / "upload" / "sr"  # a folder holding one folder of PNGs
    shutil.copytree(reproduced(intake, "01_ToyA"), upload, ignore=shutil.ignore_patterns(".*"))
    shutil.copy(reproduced(intake, "02_ToyB") / "img_005.png", upload / "img_005.png")
    rc, out, err = cli("verify", "--spec", str(intake["spec"]), "--team", "1", "--upload", str(upload.parent),
                       "--data_dir", str(intake["data"]), "--results_dir", str(results), *confinement())
    assert rc == 1, out + err
    lines = out.splitlines()
    assert lines[0].startswith("01_ToyA: img_005 (PSNR ") and "max difference" in lines[0]
    assert "img_002" not in out.split("recorded")[0].replace(str(upload), "")
    assert "different: 1 of 2 images differ" in lines[1]

    entries = json.loads((results / "results.json").read_text())
    verdict = entries["01_ToyA"][VERIFICATION_KEY]
    assert verdict["verdict"] == "different" and verdict["identical"] == 1
    assert [d["name"] for d in verdict["different"]] == ["img_005"]
    assert verdict["different"][0]["max_abs_diff"] > 1 and verdict["different"][0]["psnr_vs_reproduced"] < 60
    status = json.loads((results / "batch_status.json").read_text())
    assert status["team 01 (team01_ToyA.py)"]["digest"] == entry_digest(entries["01_ToyA"])  # still the kit's own entry
    assert changed_entries(entries, status) == {}
    txt = (results / "results.txt").read_text()
    table = render_results_txt({k: {f: v for f, v in e.items() if f != VERIFICATION_KEY} for k, e in entries.items()},
                               False, False)
    assert txt.startswith(table.split("\n# upload")[0])  # the official table, exactly
    assert "# 01_ToyA: different: 1 of 2 images differ" in txt and txt != before_txt
    page = (results / "results.html").read_text()
    assert "upload differs" in page and 'data-col="upload"' in page


# --- the comparison: whatever the upload, a finding ----------------------------------------------------------------


def test_another_teams_model_is_different_with_every_image_named(intake) -> None:
    verdict = compare_upload(reproduced(intake, "02_ToyB"), reproduced(intake, "01_ToyA"), NAMES, "valid")
    assert verdict["verdict"] == "different"
    assert [d["name"] for d in verdict["different"]] == list(NAMES)
    assert all(d["max_abs_diff"] > 1 and np.isfinite(d["psnr_vs_reproduced"]) for d in verdict["different"])


def x8_self_ensemble(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The network on the 8 flips and rotations of ``x``, each output turned back, averaged."""
    outputs = []
    for flip in (False, True):
        for turns in range(4):
            y = torch.rot90(x.flip(-1) if flip else x, turns, (-2, -1))
            out = torch.rot90(net(y), -turns, (-2, -1))
            outputs.append(out.flip(-1) if flip else out)
    return torch.stack(outputs).mean(0)


def test_x8_self_ensemble_of_the_same_network_is_different(intake, tmp_path: Path) -> None:
    net = toy(intake["root"] / "model_zoo" / "team01_ToyA.pth")
    plain, ensemble = tmp_path / "plain", tmp_path / "ensemble"
    plain.mkdir()
    ensemble.mkdir()
    for name in NAMES:
        x = uint8_to_tensor(read_rgb(intake["data"] / "LR_bicubic" / "X4" / f"{name}x4.png"), 1.0)
        with torch.no_grad():
            write_png(plain / f"{name}.png", tensor_to_uint8(net(x), 1.0))
            write_png(ensemble / f"{name}.png", tensor_to_uint8(x8_self_ensemble(net, x), 1.0))
    team = reproduced(intake, "01_ToyA")
    assert compare_upload(plain, team, NAMES, "valid")["verdict"] in ("identical", "within one grey level")
    verdict = compare_upload(ensemble, team, NAMES, "valid")  # the same network, with a trick its code does not do
    assert verdict["verdict"] == "different"
    assert [d["name"] for d in verdict["different"]] == list(NAMES)


def test_a_zip_of_a_folder_and_rounding_by_one_grey_level(intake, tmp_path: Path) -> None:
    team = reproduced(intake, "01_ToyA")
    upload = zip_folder(team, tmp_path / "nested.zip", inside="my_results/")  # one folder level inside the zip
    assert compare_upload(upload, team, NAMES, "valid")["verdict"] == "identical"
    rounded = tmp_path / "rounded"
    rounded.mkdir()
    shutil.copy(team / "img_002.png", rounded)
    img = read_rgb(team / "img_005.png").astype(np.int16)
    img[::7, ::5] += np.where(img[::7, ::5] < 255, 1, -1)
    write_png(rounded / "img_005.png", img.astype(np.uint8))
    verdict = compare_upload(rounded, team, NAMES, "valid")
    assert (verdict["verdict"], verdict["identical"], verdict["within_one"]) == ("within one grey level", 1, 1)


@pytest.mark.parametrize("damage, kind, name", [
    ("missing", "missing", "img_005.png"),
    ("extra", "extra", "img_009.png"),
    ("wrong size", "wrong size", "img_002.png"),
    ("truncated", "unreadable", "img_002.png"),
])
def test_bad_uploads_are_findings(intake, tmp_path: Path, damage: str, kind: str, name: str) -> None:
    team = reproduced(intake, "01_ToyA")
    upload = tmp_path / "upload"
    shutil.copytree(team, upload, ignore=shutil.ignore_patterns(".*"))
    if damage == "missing":
        (upload / "img_005.png").unlink()
    elif damage == "extra":
        shutil.copy(upload / "img_002.png", upload / "img_009.png")
    elif damage == "wrong size":
        write_png(upload / "img_002.png", read_rgb(team / "img_002.png")[:-4])
    else:
        data = (upload / "img_002.png").read_bytes()
        (upload / "img_002.png").write_bytes(data[: len(data) // 2])
    verdict = compare_upload(zip_folder(upload, tmp_path / "upload.zip"), team, NAMES, "valid")
    assert verdict["verdict"] == "incomplete"
    assert [(p["kind"], p["name"]) for p in verdict["problems"]] == [(kind, name)]
    assert verdict["different"] == []


# --- batch --verify_uploads ----------------------------------------------------------------------------------------


def test_batch_writes_each_teams_verdict_into_its_entry(intake) -> None:
    assert intake["rc"] == 0, intake["out"] + intake["err"]
    entries = json.loads((intake["results"] / "results.json").read_text())
    verdicts = {key: entry[VERIFICATION_KEY]["verdict"] for key, entry in entries.items()}
    assert verdicts == {"01_ToyA": "identical", "02_ToyB": "different", "03_ToyC": "no upload"}
    assert entries["01_ToyA"][VERIFICATION_KEY]["upload"].endswith("01_ToyA.zip")
    assert [d["name"] for d in entries["02_ToyB"][VERIFICATION_KEY]["different"]] == list(NAMES)
    status = json.loads((intake["results"] / "batch_status.json").read_text())
    assert changed_entries(entries, status) == {}  # the digests cover the verdicts
    assert "02_ToyB: upload verification: different: 2 of 2 images differ" in intake["err"]


def test_batch_verdicts_are_a_footer_of_results_txt_and_a_column_of_the_page(intake) -> None:
    txt = (intake["results"] / "results.txt").read_text()
    table, _, footer = txt.partition("\n# upload verification")
    entries = json.loads((intake["results"] / "results.json").read_text())
    assert table == render_results_txt({k: {f: v for f, v in e.items() if f != VERIFICATION_KEY}
                                        for k, e in entries.items()}, False, False)
    notes = [line for line in footer.splitlines() if line.startswith("# ")]
    assert [line.split(":")[0] for line in notes] == ["# 02_ToyB", "# 03_ToyC"]
    assert notes[1] == f"# 03_ToyC: no upload: none in {intake['root'] / 'uploads'} for this team"
    page = (intake["results"] / "results.html").read_text()
    assert '<th scope="col" data-col="upload"' in page
    for verdict in ("identical", "different", "no upload"):
        assert f'<span class="txt">{verdict}</span>' in page
    assert ">upload differs</a>" in page and ">no upload</a>" in page


def test_batch_refuses_two_uploads_of_one_team_and_needs_save_dir(intake, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    shutil.copy(intake["packages"][1], uploads / "team01.zip")
    unzip(intake["packages"][1], uploads / "01_ToyA")
    base = ("batch", "--spec", str(intake["spec"]), "--data_dir", str(intake["data"]), "--results_dir",
            str(tmp_path / "results"), "--verify_uploads", str(uploads), *confinement())
    rc, out, err = cli(*base, "--save_dir", str(tmp_path / "sr"))
    assert rc == 2 and "01_ToyA, team01.zip all name team 01 (team01_ToyA.py): keep one upload per team" in err
    (uploads / "team01.zip").unlink()
    rc, out, err = cli(*base)
    assert rc == 2 and "--verify_uploads compares each team's upload" in err and "add --save_dir" in err
    assert not (tmp_path / "results" / "results.json").exists()


def test_a_teams_process_cannot_hand_in_a_verdict(intake) -> None:
    """The verdict is the kit's: a team's reply whose entry holds one is refused (its entry as the kit keeps it is
    accepted without it)."""
    entry = json.loads((intake["results"] / "results.json").read_text())["01_ToyA"]
    expected = Expectation("team 01", {"valid": NAMES}, entry["data_dir"], entry["layout"], entry["data_fingerprint"],
                           entry["confined"], key="01_ToyA")
    own = {k: v for k, v in entry.items() if k != VERIFICATION_KEY}
    assert accept(json.dumps({"key": "01_ToyA", "status": "ok", "record": own}), expected).status == "ok"
    forged = accept(json.dumps({"key": "01_ToyA", "status": "ok", "record": entry}), expected)
    assert forged.status == "failed" and VERIFICATION_KEY in forged.error


def test_an_entry_changed_outside_the_kit_takes_no_verdict(intake, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(intake["results"], results)
    entries = json.loads((results / "results.json").read_text())
    entries["01_ToyA"]["valid_ave_psnr"] = 40.0  # a hand edit: the ledger's digest no longer matches
    (results / "results.json").write_text(json.dumps(entries, indent=2) + "\n")
    before = {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()}
    with pytest.raises(KitError, match="01_ToyA: its entry in .* is not what the kit wrote"):
        amend_entry(ResultsFiles(results), "01_ToyA", {VERIFICATION_KEY: {"verdict": "identical"}})
    assert {p.name: p.read_bytes() for p in results.iterdir() if p.is_file()} == before


def test_an_upload_that_is_not_there_is_a_usage_error(intake, tmp_path: Path) -> None:
    base = ("verify", "--spec", str(intake["spec"]), "--team", "1", "--data_dir", str(intake["data"]))
    rc, out, err = cli(*base, "--upload", str(tmp_path / "gone.zip"))
    assert rc == 2 and f"--upload {tmp_path / 'gone.zip'} does not exist" in err
    (tmp_path / "up.tar").write_bytes(b"")
    rc, out, err = cli(*base, "--upload", str(tmp_path / "up.tar"))
    assert rc == 2 and "is neither a .zip file nor a folder" in err
