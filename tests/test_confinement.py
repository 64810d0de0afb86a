"""Hostile team files in a batch with two of the five shared teams: confined, none can change another team's figures or
files, nor anything of the organiser's; unconfined, what they change is caught.

The shared teams are measured once (a clean batch, confined, on one Set5 image, SR images saved); each attack then
runs in a copy of that results folder, in a batch of the shared teams (already measured: skipped) and the hostile
teams. A hostile team is the conftest's toy network with an attack in its file, run at import; it prints what each
attempt gave (``HOSTILE <what>: DONE ...`` or ``refused``), which the batch relays prefixed with its key. The
attacks: delete a file outside its folder, rewrite results.json / results.txt / another team's status record, write
into another team's SR folder, read another team's weights, connect to 127.0.0.1, leave a process running, and
look at who it runs as and what it was told.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from esrkit.submission.__main__ import main
from tests.conftest import SHARED, TOY_NET, confined, copy_benchmark, require, toy_team
from tests.test_intake import TEAM_KEYS, TEAMS, organisers_table, team_table

pytestmark = confined
SHARED_TEAMS = (7, 15)  # two of the five shared teams (the other three take the same paths, for longer)

ATTACK = '''
import os, socket, subprocess, sys


def attempt(what, action):
    try:
        print(f"HOSTILE {what}: DONE {action()!r}", flush=True)
    except Exception as exc:
        print(f"HOSTILE {what}: refused ({type(exc).__name__})", flush=True)


def rewrite(path, text):
    with open(path, "w") as f:
        f.write(text)
    return "rewritten"
'''

ATTACKS = {
    91: ("Deleter", 'attempt("delete", lambda: os.remove({victim!r}))'),
    92: ("Rewriter", '\n'.join([
        'import json',
        'attempt("results.json", lambda: rewrite({results!r} + "/results.json", json.dumps({{"07_NanoSR": '
        '{{"valid_ave_psnr": 1.0}}}})))',
        'attempt("results.txt", lambda: rewrite({results!r} + "/results.txt", "07_NanoSR 1.00\\n"))',
        'attempt("status", lambda: rewrite({results!r} + "/batch_status.json", "{{}}"))'])),
    93: ("Painter", '\n'.join([
        'attempt("sr overwrite", lambda: open({sr!r} + "/07_NanoSR/valid/img_002.png", "wb").write(b"x"))',
        'attempt("sr add", lambda: open({sr!r} + "/07_NanoSR/valid/extra.png", "wb").write(b"x"))'])),
    94: ("Reader", 'attempt("read weights", lambda: len(open({weights!r}, "rb").read()))'),
    95: ("Caller", 'attempt("connect", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3).close())'),
    96: ("Lingerer", 'attempt("child", lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", '
                     '{marker!r}], start_new_session=True).pid)'),
    97: ("Spy", '\n'.join([
        'print(f"HOSTILE uid: {{os.getuid()}}", flush=True)',
        'told = open("/proc/self/cmdline").read() + str(dict(os.environ))',
        'print(f"HOSTILE told: {{sum(told.count({results!r} + name) for name in (\'/results\', \'/batch\'))}}", '
        'flush=True)'])),
}


def hostile_source(code: str, **facts: Any) -> str:
    """The toy network with ``code`` (the attack, its facts filled in) run at import."""
    return TOY_NET + ATTACK + code.format(**facts) + "\n"


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def run_batch(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["batch", *argv, "--device", "cpu", "--quiet", "--threads", "1"])
    return rc, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hostile_lines(err: str, key: str) -> dict[str, str]:
    """``HOSTILE what: result`` lines relayed for ``key``."""
    found = {}
    for line in err.splitlines():
        prefix = f"[{key}] HOSTILE "
        if line.startswith(prefix):
            what, _, result = line[len(prefix):].partition(": ")
            found[what] = result
    return found


def entry_text(results: dict[str, Any], key: str) -> str:
    return json.dumps(results[key], sort_keys=True)


def processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, benchmarks_dir: Path) -> Iterator[dict[str, Any]]:
    """The clean batch of the shared teams, and a batch of them with every hostile team into a copy of it."""
    submissions = require(SHARED / "submissions")
    root = tmp_path_factory.mktemp("confinement")
    data = copy_benchmark(root / "Set5one", benchmarks_dir / "Set5", ("img_002",))
    shared_spec = "year = 2025\n\n" + "".join(organisers_table(team, submissions) for team in SHARED_TEAMS)
    (root / "shared.toml").write_text(shared_spec)
    clean = root / "clean"
    rc, out, err = run_batch("--spec", str(root / "shared.toml"), "--data_dir", str(data), "--results_dir", str(clean),
                             "--save_dir", str(clean / "sr"))
    assert rc == 0, out + err

    attacked = root / "attacked"
    shutil.copytree(clean, attacked)
    victim = root / "victim.txt"
    victim.write_text("the organiser's file\n")
    listener = Listener()
    marker = f"esrkit-hostile-{uuid.uuid4().hex}"
    facts = dict(victim=str(victim), results=str(attacked), sr=str(attacked / "sr"), port=listener.port,
                 weights=str(submissions / "model_zoo" / TEAMS[7]["weights"]), marker=marker)
    hostile = root / "hostile"
    tables = ""
    for number, (name, code) in ATTACKS.items():
        path = toy_team(hostile, f"team{number}_{name}.py", hostile_source(code, **facts))
        tables += team_table(model_file=str(path), class_name="Toy", data_range=1.0)
    (root / "attacked.toml").write_text(shared_spec + tables)
    before = {"hostile": snapshot(hostile), "data": snapshot(data), "clean": snapshot(clean)}
    try:
        rc, out, err = run_batch("--spec", str(root / "attacked.toml"), "--data_dir", str(data), "--results_dir",
                                 str(attacked), "--save_dir", str(attacked / "sr"))
    finally:
        listener.close()
    yield dict(root=root, data=data, clean=clean, attacked=attacked, victim=victim, listener=listener, marker=marker,
               rc=rc, out=out, err=err, before=before, hostile=hostile)
    for pid in processes_with(marker):  # a test that failed: leave nothing behind
        with contextlib.suppress(OSError):
            os.kill(pid, 9)


def hostile_key(number: int) -> str:
    return f"{number}_{ATTACKS[number][0]}"


def test_every_hostile_team_is_one_line_and_measured_as_itself(world) -> None:
    lines = {line.partition(": ")[0]: line.partition(": ")[2] for line in world["err"].splitlines()
             if not line.startswith("[") and ": " in line}
    for number in ATTACKS:
        assert lines[hostile_key(number)] == "ok", world["err"]  # its network works: its attack changed nothing
    for key in (TEAM_KEYS[team] for team in SHARED_TEAMS):
        assert lines[key] == "skipped"
    assert world["rc"] == 0, world["out"] + world["err"]


def test_the_other_teams_entries_status_and_sr_images_are_byte_identical(world) -> None:
    clean, attacked = world["clean"], world["attacked"]
    before = json.loads((clean / "results.json").read_text())
    after = json.loads((attacked / "results.json").read_text())
    assert set(after) == set(before) | {hostile_key(n) for n in ATTACKS}
    for key in (TEAM_KEYS[team] for team in SHARED_TEAMS):
        assert entry_text(after, key) == entry_text(before, key)
        assert snapshot(attacked / "sr" / key) == snapshot(clean / "sr" / key)
    status_before = json.loads((clean / "batch_status.json").read_text())
    status_after = json.loads((attacked / "batch_status.json").read_text())
    for label, record in status_before.items():
        assert status_after[label] == record
    txt = (attacked / "results.txt").read_text()
    assert "07_NanoSR" in txt and "1.00" not in txt.split("07_NanoSR")[1].splitlines()[0]


def test_no_attempt_on_anything_outside_its_own_folders_got_through(world) -> None:
    for number in ATTACKS:
        for what, result in hostile_lines(world["err"], hostile_key(number)).items():
            if what not in ("uid", "told", "child"):  # it may start a child: see the next test
                assert result.startswith("refused"), (number, what, result)
    assert hostile_lines(world["err"], hostile_key(91))["delete"].startswith("refused")
    assert world["victim"].read_text() == "the organiser's file\n"
    assert hostile_lines(world["err"], hostile_key(94))["read weights"].startswith("refused")
    assert world["listener"].accepted == 0
    assert snapshot(world["data"]) == world["before"]["data"]
    assert snapshot(world["hostile"]) == world["before"]["hostile"]
    assert snapshot(world["clean"]) == world["before"]["clean"]


def test_a_process_it_leaves_running_is_gone_when_it_ends(world) -> None:
    started = hostile_lines(world["err"], hostile_key(96))["child"]
    assert started.startswith("DONE")  # it may start one, inside its own PID namespace...
    assert processes_with(world["marker"]) == []  # ...which ends with it


def test_it_runs_as_nobody_and_is_never_told_where_the_results_are(world) -> None:
    seen = hostile_lines(world["err"], hostile_key(97))
    assert seen["uid"] == "65534"
    assert seen["told"] == "0"


def test_every_entry_says_it_was_confined(world) -> None:
    results = json.loads((world["attacked"] / "results.json").read_text())
    assert all(entry["confined"] is True for entry in results.values())
    assert "unconfined" not in (world["attacked"] / "results.txt").read_text()


# --- unconfined: what a team's code changes is caught -----------------------------------------------


def test_unconfined_tampering_during_the_batch_is_put_back_and_said(world) -> None:
    root = world["root"]
    folder = root / "unconfined"
    shutil.copytree(world["clean"], folder)
    code = ('import json\nattempt("results.json", lambda: rewrite({results!r} + "/results.json", json.dumps({{'
            '**json.load(open({results!r} + "/results.json")), "07_NanoSR": {{"valid_ave_psnr": 1.0}}}})))')
    path = toy_team(root / "tamperer", "team92_Rewriter.py", hostile_source(code, results=str(folder)))
    spec = root / "unconfined.toml"
    spec.write_text((root / "shared.toml").read_text()
                    + team_table(model_file=str(path), class_name="Toy", data_range=1.0))
    rc, out, err = run_batch("--spec", str(spec), "--data_dir", str(world["data"]), "--results_dir", str(folder),
                             "--unconfined")
    assert rc == 0, out + err
    assert hostile_lines(err, "92_Rewriter")["results.json"].startswith("DONE")  # unconfined, it could...
    assert ("warning: 07_NanoSR: its results.json entry was changed by something other than the kit while this "
            "batch ran (a team run unconfined?): put back as the kit wrote it") in err  # ...and it was undone
    clean = json.loads((world["clean"] / "results.json").read_text())
    after = json.loads((folder / "results.json").read_text())
    assert entry_text(after, "07_NanoSR") == entry_text(clean, "07_NanoSR")
    assert after["92_Rewriter"]["confined"] is False
    assert "# measured unconfined" in (folder / "results.txt").read_text()
    assert "warning: the teams' code runs UNCONFINED" in err


def test_an_entry_edited_between_two_runs_is_measured_again_and_refused_by_merge(world, tmp_path, capsys) -> None:
    folder = world["root"] / "edited"
    shutil.copytree(world["clean"], folder)
    results = json.loads((folder / "results.json").read_text())
    results["07_NanoSR"]["valid_ave_psnr"] = 1.0
    (folder / "results.json").write_text(json.dumps(results, indent=2))

    rc = main(["merge", str(folder), "--out", str(tmp_path / "merged")])
    error = capsys.readouterr().err
    assert rc == 2 and not (tmp_path / "merged").exists()
    assert error.startswith(f"error: 07_NanoSR in {folder / 'results.json'}: changed outside the kit") and error.count("\n") == 1

    rc, out, err = run_batch("--spec", str(world["root"] / "shared.toml"), "--data_dir", str(world["data"]),
                             "--results_dir", str(folder))
    assert rc == 0, out + err
    assert ("07_NanoSR: its results.json entry was changed outside the kit since the kit wrote it: measuring it "
            "again") in err
    lines = {line.partition(": ")[0]: line.partition(": ")[2] for line in err.splitlines() if not line.startswith("[")}
    assert lines["07_NanoSR"] == "ok" and lines["15_DIPNet_slim_v2"] == "skipped"
    again = json.loads((folder / "results.json").read_text())["07_NanoSR"]
    clean = json.loads((world["clean"] / "results.json").read_text())["07_NanoSR"]
    assert again["valid_psnr"] == clean["valid_psnr"] and again["flops"] == clean["flops"]
