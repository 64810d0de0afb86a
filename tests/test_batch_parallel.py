"""The batch over several workers, over shards, and ``merge``: the same figures as one team after another.

The references are the sequential batch (one team after another, in this process, one torch thread) and
toy teams written here whose behaviour is known by construction: a network that SIGKILLs its own process
in its first forward (in a batch given ``ESRKIT_TOY_KILL``), one that never finishes its forward, and tiny
nearest-neighbour networks. Each test runs on one image of Set5 with one torch thread per team, so that
the sequential and the parallel batches compute with the same thread count (oneDNN rounds differently
with another). The two parallel batches run as the organisers run them -- the command line, as a process
-- and are started first, so that they run while the sequential reference is computed here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
import torch

from esrkit.errors import KitError
from esrkit.spec import TeamSpec
from esrkit.submission.__main__ import main
from esrkit.submission.merge import differing_keys
from esrkit.submission.shards import parse_shard, shard_from_environment, shard_of
from tests.conftest import SHARED, confined, copy_benchmark, require, torch_threads
from tests.test_intake import BASELINES, TEAM_KEYS, organisers_table, team_table

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 15  # --team_timeout of the hanging toy's batch: far above a toy team's work (counted from its go, after
# its imports)
HANG_S = 120  # how long the hanging toy's forward sleeps (bounded, so that nothing can outlive the tests for long)
BASELINE_NAMES = ("EFDN",)  # the 2025 baseline (the other baselines take the same path, for longer)
# Two of the five NTIRE 2025 teams: a file that hard-codes CUDA (its note relayed) and a plain one; the other three
# take the same paths, for longer.
PARALLEL_TEAMS = (7, 15)
MEASURED = len(PARALLEL_TEAMS) + len(BASELINE_NAMES)
SLURM_ARRAY = "SLURM_ARRAY_"  # the variables that would make a batch a shard

TOY = '''import os
import signal
import time
from pathlib import Path

import torch
from torch import nn


class Toy(nn.Module):
    """Nearest-neighbour x4 (a 1x1 conv to 48 channels, then PixelShuffle); MODE says what its forward does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 48, 1)
        self.up = nn.PixelShuffle(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if {mode!r} == "kill" and os.environ.get("ESRKIT_TOY_KILL"):  # the team process keeps ESRKIT_ variables
            os.kill(os.getpid(), signal.SIGKILL)
        if {mode!r} == "hang":
            time.sleep({hang})
        return self.up(self.conv(x))
'''


def write_toy(root: Path, file_name: str, mode: str = "fine", scale_weights: float = 1.0) -> Path:
    """A toy team file under ``root/models`` with its weights in ``root/model_zoo`` (named like the file)."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "model_zoo").mkdir(exist_ok=True)
    path = root / "models" / file_name
    path.write_text(TOY.format(mode=mode, hang=HANG_S))
    weight = torch.zeros(48, 3, 1, 1)
    for c in range(3):
        weight[c * 16:(c + 1) * 16, c] = scale_weights
    torch.save({"conv.weight": weight, "conv.bias": torch.zeros(48)}, root / "model_zoo" / f"{path.stem}.pth")
    return path


def toy_table(path: Path, **keys: Any) -> str:
    return team_table(model_file=str(path), class_name="Toy", data_range=1.0, **keys)


def batch_argv(*argv: str) -> list[str]:
    return ["batch", *argv, "--device", "cpu", "--quiet", "--threads", "1"]


def run_batch_cli(*argv: str) -> tuple[int, str, str]:
    """The batch command in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(batch_argv(*argv))
    return rc, out.getvalue(), err.getvalue()


def start_batch_process(*argv: str, **variables: str) -> subprocess.Popen:
    """The batch command as a process of its own (as an organiser runs it), outside any Slurm array."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SLURM_ARRAY)} | variables
    return subprocess.Popen([sys.executable, "-m", "esrkit.submission", *batch_argv(*argv)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate()
    return process.returncode, out, err


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def figures(entry: dict[str, Any]) -> dict[str, Any]:
    """Every key of an entry but the ones that change from run to run (runtimes, wall times, the date) and how it
    ran (confined in a process of its own, or in the batch's process)."""
    return {k: v for k, v in entry.items()
            if "runtime" not in k and not k.endswith("_wall_s") and k not in ("date", "confined")}


def status_lines(err: str) -> dict[str, str]:
    """``key: status ...`` lines of a batch's output, by key."""
    lines = {}
    for line in err.splitlines():
        key, sep, rest = line.partition(": ")
        if sep and rest.split(" ")[0] in ("ok", "failed", "skipped") and not key.startswith("["):
            lines[key] = rest
    return lines


@pytest.fixture(autouse=True, scope="module")
def one_thread_outside_slurm_arrays() -> Iterator[None]:
    """One torch thread; and no Slurm array variables (in an array job a batch would take them as its shard)."""
    with torch_threads(1), pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith(SLURM_ARRAY)]:
            mp.delenv(name)
        yield


@pytest.fixture(scope="module")
def one_image(tmp_path_factory: pytest.TempPathFactory, benchmarks_dir: Path) -> Path:
    return copy_benchmark(tmp_path_factory.mktemp("data") / "Set5one", benchmarks_dir / "Set5", ("img_002",))


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory, one_image: Path,
            official_weights_dir: Path) -> Iterator[dict[str, Any]]:
    """Start the two parallel batches: the five NTIRE 2025 submissions, two baselines and a toy that SIGKILLs
    itself (``--workers 2``); a toy that hangs beside a fine one (``--workers 2 --team_timeout``)."""
    submissions = require(SHARED / "submissions")
    root = tmp_path_factory.mktemp("parallel")
    teams = "year = 2025\n\n" + "".join(organisers_table(team, submissions) for team in PARALLEL_TEAMS)
    teams += "".join(team_table(entry=name, weights=str(official_weights_dir / BASELINES[name][0]))
                     for name in BASELINE_NAMES)
    killer = write_toy(root, "team41_Killer.py", mode="kill")
    (root / "reference.toml").write_text(teams)
    (root / "parallel.toml").write_text(teams + toy_table(killer))
    hanging, fine = write_toy(root, "team42_Hang.py", mode="hang"), write_toy(root, "team43_Fine.py")
    (root / "timeout.toml").write_text(toy_table(hanging) + toy_table(fine))
    common = ("--data_dir", str(one_image), "--workers", "2")
    processes = {
        "parallel": start_batch_process("--spec", str(root / "parallel.toml"), "--results_dir", str(root / "parallel"),
                                        *common, ESRKIT_TOY_KILL="1"),
        "timeout": start_batch_process("--spec", str(root / "timeout.toml"), "--results_dir", str(root / "timeout"),
                                       "--team_timeout", str(TIMEOUT_S), *common),
    }
    yield {"root": root, "processes": processes, "done": {}}
    for process in processes.values():  # a test that failed early: stop the batch (it stops its team processes)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.communicate()


def finished(started: dict[str, Any], name: str) -> dict[str, Any]:
    """The batch ``name`` once it has ended: its exit code, output, and results.json / batch_status.json as it
    left them (a later test re-runs into the same folder)."""
    if name not in started["done"]:
        rc, out, err = finish(started["processes"][name])
        folder = started["root"] / name
        started["done"][name] = {"rc": rc, "out": out, "err": err, "results": read_json(folder / "results.json"),
                                 "status": read_json(folder / "batch_status.json")}
    return started["done"][name]


@pytest.fixture(scope="module")
def reference(started: dict[str, Any], one_image: Path) -> dict[str, Any]:
    """The sequential batch of the same teams (less the toy), in this process, while the others run."""
    root = started["root"]
    rc, out, err = run_batch_cli("--spec", str(root / "reference.toml"), "--data_dir", str(one_image),
                                 "--results_dir", str(root / "reference"), "--in_process", "--unconfined")
    assert rc == 0, out + err
    return read_json(root / "reference" / "results.json")


@confined  # the parallel batches run each team confined
def test_workers_give_the_sequential_figures(started, reference) -> None:
    """--workers 2: every team's entry equals the sequential batch's on every key but the timings, exactly."""
    batch = finished(started, "parallel")
    rc, out, err, results = batch["rc"], batch["out"], batch["err"], batch["results"]
    expected_keys = {*(TEAM_KEYS[t] for t in PARALLEL_TEAMS), *(BASELINES[name][1] for name in BASELINE_NAMES)}
    assert set(reference) == expected_keys
    assert set(results) == expected_keys, out + err  # the killed toy has no entry
    for key in expected_keys:
        assert figures(results[key]) == figures(reference[key]), (key, differing_keys(results[key], reference[key]))
    assert results["07_NanoSR"]["device"].endswith("(1 threads)")  # the thread count every team ran with
    assert "2 workers on the CPU, each team alone on its worker; 1 torch thread per team (--threads)" in err
    lines = status_lines(err)
    assert all(lines[key].startswith("ok (on cpu worker ") for key in expected_keys), lines
    assert "[15_DIPNet_slim_v2] note: team15_DIPNet_slim_v2.py hard-codes CUDA" in err  # relayed whole, prefixed
    assert rc == 1 and f"{MEASURED} of {MEASURED + 1} measured or already measured; 1 failed" in out  # the toy failed


@confined  # the parallel batches run each team confined
def test_a_team_process_killed_mid_team_loses_no_other_entry(started, one_image) -> None:
    """The toy SIGKILLs its own process in its first forward: one failed line naming the signal; every other
    entry is there (the first test compares each with the sequential batch's) and both files parse; a re-run
    with --refresh missing measures that team alone."""
    batch, root = finished(started, "parallel"), started["root"]
    assert status_lines(batch["err"])["team41_Killer.py"].startswith(
        "failed -- its process was killed by SIGKILL (the out-of-memory killer, or a kill) before reporting")
    status, before = batch["status"], batch["results"]
    assert status["team41_Killer.py"]["status"] == "failed"
    assert sum(s["status"] == "ok" for s in status.values()) == MEASURED and "41_Killer" not in before
    # The re-run in this process (the same --threads: the same fingerprints), without ESRKIT_TOY_KILL: the toy runs.
    rc, out, err = run_batch_cli("--spec", str(root / "parallel.toml"), "--data_dir", str(one_image),
                                 "--results_dir", str(root / "parallel"), "--in_process", "--unconfined", "--refresh", "missing")
    assert rc == 0, out + err
    lines = status_lines(err)
    assert lines.pop("41_Killer") == "ok"
    assert set(lines.values()) == {"skipped"} and len(lines) == MEASURED
    after = read_json(root / "parallel" / "results.json")
    assert {k: v for k, v in after.items() if k != "41_Killer"} == before  # not one byte of the others re-measured
    assert read_json(root / "parallel" / "batch_status.json")["team41_Killer.py"]["status"] == "ok"


@confined  # the parallel batches run each team confined
def test_a_team_past_the_timeout_is_one_failed_line_and_the_others_finish(started) -> None:
    batch = finished(started, "timeout")
    rc, out, err = batch["rc"], batch["out"], batch["err"]
    lines = status_lines(err)
    assert lines["team42_Hang.py"].startswith(f"failed -- timed out: still running after --team_timeout {TIMEOUT_S} s, "
                                              f"so its process group was killed (on cpu worker ")
    assert lines["43_Fine"].startswith("ok (on cpu worker ")
    assert rc == 1 and "1 of 2 measured or already measured; 1 failed" in out
    results = batch["results"]
    assert list(results) == ["43_Fine"] and results["43_Fine"]["valid_images"] == ["img_002"]


# --- shards and merge ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory, one_image: Path) -> Path:
    """Four numbered toy teams and one whose file is not named teamNN_Name.py (sharded by a hash of its name),
    measured one after another (``all/``) and as shards 1/2 and 2/2 (``shard1/``, ``shard2/``), in this process."""
    root = tmp_path_factory.mktemp("toys")
    text = "".join(toy_table(write_toy(root, f"team{n}_Toy{n}.py", scale_weights=0.5 + n / 100))
                   for n in (51, 52, 53, 54))
    text += toy_table(write_toy(root, "extra_toy.py", scale_weights=0.9), name="Extra")
    (root / "teams.toml").write_text(text)
    args = ("--spec", str(root / "teams.toml"), "--data_dir", str(one_image), "--in_process", "--unconfined")
    rc, out, err = run_batch_cli(*args, "--results_dir", str(root / "all"))
    assert rc == 0, out + err
    for k in (1, 2):
        rc, out, err = run_batch_cli(*args, "--results_dir", str(root / f"shard{k}"), "--shard", f"{k}/2")
        assert rc == 0, out + err
        assert f"shard {k}/2 (--shard {k}/2): " in err and f"# Batch shard {k}/2: its " in out
    return root


def test_two_shards_then_merge_give_the_sequential_entries(sharded) -> None:
    shard_keys = []
    for k in (1, 2):
        assert (sharded / f"shard{k}" / f"batch_shard-{k}-of-2.md").exists()
        assert not (sharded / f"shard{k}" / "batch.md").exists()  # a shard's table never replaces the batch's
        shard_keys.append(set(read_json(sharded / f"shard{k}" / "results.json")))
    assert shard_keys[0] | shard_keys[1] == {"51_Toy51", "52_Toy52", "53_Toy53", "54_Toy54", "Extra"}
    assert not shard_keys[0] & shard_keys[1]
    assert {"52_Toy52", "54_Toy54"} <= shard_keys[0] and {"51_Toy51", "53_Toy53"} <= shard_keys[1]  # NN mod 2 + 1
    out = sharded / "merged"
    assert main(["merge", str(sharded / "shard1" / "results.json"), str(sharded / "shard2"), "--out", str(out)]) == 0
    merged, sequential = read_json(out / "results.json"), read_json(sharded / "all" / "results.json")
    assert set(merged) == set(sequential)
    for key in sequential:
        assert figures(merged[key]) == figures(sequential[key]), key
    status = read_json(out / "batch_status.json")
    assert len(status) == 5 and all(s["status"] == "ok" for s in status.values())
    txt = [line for line in (out / "results.txt").read_text().splitlines() if "\t" in line]  # the table's lines
    assert len(txt) == 6 and {line.split()[0] for line in txt[1:]} == set(sequential)


def test_a_shard_without_a_team_is_one_note(sharded, one_image, tmp_path) -> None:
    rc, out, err = run_batch_cli("--spec", str(sharded / "teams.toml"), "--data_dir", str(one_image), "--in_process", "--unconfined",
                                 "--results_dir", str(tmp_path / "empty"), "--teams", "51", "--shard", "1/2")
    assert rc == 0 and out == "shard 1/2: no team of this batch falls in it (1 teams over 2 shards); nothing to do\n"
    assert not (tmp_path / "empty").exists()


def test_merge_refuses_two_different_figures_unless_told_which_wins(sharded, tmp_path, capsys) -> None:
    """The same key measured twice (the sequential batch and a shard: other runtimes) is refused, naming the key
    and both files; identical entries are fine; --prefer settles it."""
    first, second = sharded / "all" / "results.json", sharded / "shard1" / "results.json"
    assert main(["merge", str(first), str(second), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and message.startswith("error: ")
    assert f"{first} and {second} hold different figures (valid_ave_runtime" in message and "--prefer" in message
    assert not (tmp_path / "out" / "results.json").exists()  # nothing written
    assert main(["merge", str(first), str(first.parent), "--out", str(tmp_path / "out")]) == 2  # one file twice
    assert "is given twice" in capsys.readouterr().err
    assert main(["merge", str(first), str(second), "--out", str(tmp_path / "last"), "--prefer", "last"]) == 0
    last, shard = read_json(tmp_path / "last" / "results.json"), read_json(second)
    assert all(last[k] == shard[k] for k in shard) and set(last) == set(read_json(first))
    # An entry that differs only in its bookkeeping (date, wall time) is the same entry.
    a, b = tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"
    entry = read_json(first)["51_Toy51"]
    for path, date, wall in ((a, "2026-12-01T10:00:00+00:00", 1.5), (b, "2026-12-02T10:00:00+00:00", 2.5)):
        path.parent.mkdir()
        path.write_text(json.dumps({"51_Toy51": {**entry, "date": date, "valid_wall_s": wall}}))
    capsys.readouterr()
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "same")]) == 0
    assert "1 held identically by several inputs" in capsys.readouterr().out
    b.write_text(json.dumps({"51_Toy51": {**entry, "date": "2026-12-02T10:00:00+00:00", "valid_ave_psnr": 1.0}}))
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "newest"), "--prefer", "newest"]) == 0
    assert read_json(tmp_path / "newest" / "results.json")["51_Toy51"]["valid_ave_psnr"] == 1.0
    assert main(["merge", str(b), "--out", str(tmp_path / "same")]) == 2  # its results.json is not an input
    assert "exists and is not one of the inputs" in capsys.readouterr().err
    b.write_text(json.dumps({"52_Other": {**entry, "device": "NVIDIA H200"}}))
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "mixed")]) == 0
    assert (f"warning: the entries were measured on different devices ({entry['device']}: 1; NVIDIA H200: 1): "
            f"runtimes compare only between entries of one device") in capsys.readouterr().err


def test_blacking_out_an_hr_image_measures_the_team_again(tmp_path, one_image) -> None:
    """The fingerprint holds the data's contents: the same folder with other pixels is other data."""
    data = copy_benchmark(tmp_path / "data", one_image, ("img_002",))
    toy = write_toy(tmp_path, "team61_Toy.py")
    args = ("--models_dir", str(toy.parent), "--data_dir", str(data), "--results_dir", str(tmp_path / "out"),
            "--data_range", "1.0", "--in_process", "--unconfined")

    def run() -> tuple[str, float]:
        rc, out, err = run_batch_cli(*args)
        assert rc == 0, out + err
        return status_lines(err)["61_Toy"], read_json(tmp_path / "out" / "results.json")["61_Toy"]["valid_ave_psnr"]

    status, psnr = run()
    assert status == "ok" and run() == ("skipped", psnr)
    hr = data / "HR" / "img_002.png"
    cv2.imwrite(str(hr), np.zeros_like(cv2.imread(str(hr))))
    status, black = run()
    assert status == "ok" and black < psnr - 5  # measured again, against the black image


# --- shard assignment ------------------------------------------------------------------------------


def test_a_teams_shard_is_its_own_and_stable_when_teams_are_added() -> None:
    teams = [TeamSpec(team=n, model_file=Path(f"team{n:02d}_X.py")) for n in range(1, 47)]
    others = [TeamSpec(entry=name) for name in ("EFDN", "RLFN", "RFDN")] + [TeamSpec(model_file=Path("extra.py"))]
    before = {t.label: shard_of(t, 4) for t in teams + others}
    grown = teams + others + [TeamSpec(team=n, model_file=Path(f"team{n:02d}_Late.py")) for n in (47, 48, 90)]
    assert {t.label: shard_of(t, 4) for t in grown if t.label in before} == before
    sizes = [sum(shard_of(t, 4) == k for t in teams) for k in (1, 2, 3, 4)]
    assert sizes == [11, 12, 12, 11]  # 46 consecutive team numbers: even shards (NN mod 4 + 1)
    assert shard_of(TeamSpec(entry="EFDN"), 4) == shard_of(TeamSpec(entry="efdn", weights=Path("/x.pth")), 4)
    assert {shard_of(t, 1) for t in grown} == {1}
    same_file_elsewhere = TeamSpec(model_file=Path("/a/extra.py")), TeamSpec(model_file=Path("/b/extra.py"))
    assert shard_of(same_file_elsewhere[0], 7) == shard_of(same_file_elsewhere[1], 7)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, (1, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, (4, 4)),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "20", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10",
      "SLURM_ARRAY_TASK_STEP": "5"}, (3, 3)),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}, "--array=1-3"),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, "--array=1-4"),
])
def test_the_slurm_array_task_is_the_shard(env, expected) -> None:
    if isinstance(expected, str):
        with pytest.raises(KitError, match=expected):
            shard_from_environment(env)
        return
    shard = shard_from_environment(env)
    assert (None if shard is None else (shard.index, shard.count)) == expected


def test_shard_flag_is_k_of_n_counted_from_one() -> None:
    assert (parse_shard("2/4").index, parse_shard(" 2 / 4 ").count) == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b"):
        with pytest.raises(KitError, match="--shard"):
            parse_shard(bad)


def test_parallel_flags_that_cannot_work_are_one_line_errors(one_image, tmp_path, capsys) -> None:
    base = ["batch", "--models_dir", str(tmp_path), "--data_dir", str(one_image), "--results_dir", str(tmp_path / "o")]
    for extra, part in ((["--workers", "2", "--in_process", "--unconfined"], "drop --in_process"),
                        (["--workers", "0"], "--workers 0"),
                        (["--workers", "2", "--devices", "all"], "give one of them"),
                        (["--team_timeout", "0"], "--team_timeout 0"),
                        (["--threads", "0"], "--threads 0"),
                        (["--shard", "3/2"], "--shard 3/2")):
        assert main(base + extra) == 2, extra
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1 and part in error, error
