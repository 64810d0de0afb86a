"""The README's sbatch array script, submitted to a real Slurm: a one-node cluster started on this machine
(``tests/slurm_cluster.py``) runs it as a 2-task array over the five NTIRE 2025 submissions on Set5, and the
shared results folder it fills holds exactly the figures of a sequential batch.

The script is the README's own block, read from README.md; the test fills in its two paths (the data, the
shared results folder) and submits it as the README says for CPU-only nodes (``MEASURE_ON="--workers 1"``,
``sbatch --gres=none``), with sbatch options that take precedence over its ``#SBATCH`` lines for this small
node: 2 tasks, 1 CPU each. It is submitted from a folder that stands in for the kit's checkout (its
``teams.toml``, ``intake/logs/``, ``.venv`` = the running interpreter's environment; the kit on PYTHONPATH).
Both the array's teams and the sequential reference run with one torch thread, so the figures are equal
exactly (oneDNN rounds differently only with another thread count). The script shares one results folder
between its tasks, so no ``merge`` is needed: the array's tasks merge into it under its lock.

Run it alone: ``python -m pytest -q -p no:cacheprovider tests/test_slurm.py`` (as root, with Debian's slurm-wlm
and munge installed; it skips, saying why, where they cannot be had).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Iterator

import pytest

from esrkit.paths import REPO_ROOT
from tests.slurm_cluster import OneNodeCluster, unavailable
from tests.test_batch_parallel import figures, read_json, run_batch_cli, status_lines
from tests.test_intake import TEAM_KEYS, TEAMS, assert_published_figures, organisers_table
from tests.conftest import SHARED, confined, require

SCRIPT_HEADING = "**A Slurm array over a shared results folder.**"
CPU_RECIPE = 'MEASURE_ON="--workers 1" sbatch --gres=none intake.sbatch'  # the script's own line for CPU-only nodes
DATA_PLACEHOLDER, RESULTS_PLACEHOLDER = "/data/DIV2K_LSDIR", "/shared/intake"
SHARDS = 2
# On top of the README's recipe for CPU-only nodes: SHARDS tasks of 1 CPU each (the node has 2), one torch thread.
SBATCH_OPTIONS = (f"--array=1-{SHARDS}", "--cpus-per-task=1", "--gres=none")
MEASURE_ON = "--workers 1 --threads 1"
SEQUENTIAL_TEAMS = (8, 15)  # the sequential batch the array is compared with to the last digit: one team per shard
JOB_TIMEOUT_S = 600  # the array takes well under a minute here; a hung job fails the test, never the suite


def readme_sbatch_script() -> str:
    """The README's sbatch script: the first bash block after its heading."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert SCRIPT_HEADING in text, f"README.md has no {SCRIPT_HEADING}"
    match = re.search(r"```bash\n(.*?)```", text[text.index(SCRIPT_HEADING):], re.S)
    assert match and match.group(1).startswith("#!/bin/bash\n#SBATCH"), "the README's sbatch block moved"
    return match.group(1)


def filled_in(script: str, data_dir: Path, results_dir: Path) -> str:
    for placeholder in (DATA_PLACEHOLDER, RESULTS_PLACEHOLDER):
        assert script.count(placeholder) == 1, f"the README's script no longer holds {placeholder} once"
    return (script.replace(DATA_PLACEHOLDER, shlex.quote(str(data_dir)))
            .replace(RESULTS_PLACEHOLDER, shlex.quote(str(results_dir))))


def stand_in_checkout(folder: Path, teams_toml: str) -> Path:
    """What the script expects in its submit folder: ``teams.toml``, ``intake/logs/`` and ``.venv`` (this
    interpreter's virtualenv; outside one, an activate script that makes ``python`` this interpreter)."""
    (folder / "intake" / "logs").mkdir(parents=True)
    (folder / "teams.toml").write_text(teams_toml)
    if (Path(sys.prefix) / "bin" / "activate").exists():
        (folder / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    else:
        (folder / ".venv" / "bin").mkdir(parents=True)
        (folder / ".venv" / "bin" / "activate").write_text(f'python() {{ {shlex.quote(sys.executable)} "$@"; }}\n')
    return folder


@pytest.fixture(scope="module")
def cluster() -> Iterator[OneNodeCluster]:
    reason = unavailable()
    if reason:
        pytest.skip(f"no Slurm cluster can be started here: {reason}")
    cluster = OneNodeCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        strays = cluster.stop()
        assert not strays, f"processes of the test cluster outlived it (now killed): {strays}"


@confined  # the script's batch runs each team confined
def test_the_readmes_sbatch_array_on_a_real_slurm_gives_the_sequential_figures(cluster, tmp_path,
                                                                               benchmarks_dir) -> None:
    submissions = require(SHARED / "submissions")
    set5 = benchmarks_dir / "Set5"
    teams = "year = 2025\n\n" + "".join(organisers_table(team, submissions) for team in TEAMS)
    checkout = stand_in_checkout(tmp_path / "checkout", teams)
    shared = tmp_path / "shared_intake"
    script = readme_sbatch_script()
    assert CPU_RECIPE in script
    (checkout / "intake.sbatch").write_text(filled_in(script, set5, shared))
    python_path = os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))
    job = cluster.sbatch(checkout / "intake.sbatch", *SBATCH_OPTIONS, cwd=checkout,
                         env={"MEASURE_ON": MEASURE_ON, "PYTHONPATH": python_path})

    # The sequential reference, in this process, while the array runs: one team of each shard (the cheapest two to
    # count), compared to the last digit; all five are compared with their published figures below.
    rc, out, err = run_batch_cli("--spec", str(checkout / "teams.toml"), "--data_dir", str(set5),
                                 "--results_dir", str(tmp_path / "reference"), "--in_process", "--unconfined",
                                 "--teams", *map(str, SEQUENTIAL_TEAMS))
    assert rc == 0, out + err
    reference = read_json(tmp_path / "reference" / "results.json")

    tasks = cluster.wait(job, JOB_TIMEOUT_S)
    logs = {k: (checkout / "intake" / "logs" / f"{job}_{k}.log") for k in range(1, SHARDS + 1)}
    logs_text = {k: path.read_text() if path.exists() else "(no log)" for k, path in logs.items()}
    shown = "".join(f"\n--- task {k}:\n{text}" for k, text in logs_text.items())
    assert sorted(tasks) == [str(k) for k in logs], shown
    for k in logs:
        assert (tasks[str(k)]["JobState"], tasks[str(k)]["ExitCode"]) == ("COMPLETED", "0:0"), shown

    # Each task measured its shard, taken from the array (team NN is in shard NN mod 2 + 1), into the one folder.
    measured = {}
    for k, text in logs_text.items():
        assert f"shard {k}/{SHARDS} (from SLURM_ARRAY_TASK_ID={k}, SLURM_ARRAY_TASK_COUNT={SHARDS}" in text, shown
        assert (shared / f"batch_shard-{k}-of-{SHARDS}.md").exists()
        lines = status_lines(text)
        assert {line.split()[0] for line in lines.values()} == {"ok"}, shown
        measured[k] = set(lines) & set(TEAM_KEYS.values())  # less the progress lines ("teams 1/2: ok")
    assert measured == {k: {key for team, key in TEAM_KEYS.items() if team % SHARDS + 1 == k} for k in logs}

    results = read_json(shared / "results.json")
    assert set(results) == set(TEAM_KEYS.values()) and set(reference) == {TEAM_KEYS[t] for t in SEQUENTIAL_TEAMS}
    for key in reference:  # counts, PSNR (every image), device and thread count: all equal
        assert figures(results[key]) == figures(reference[key]), key
    for team, key in TEAM_KEYS.items():  # every team: its published counts and (another CPU) PSNR
        assert_published_figures(results[key], team)
        assert results[key]["device"].endswith("(1 threads)"), (key, results[key]["device"])
    assert {s["status"] for s in read_json(shared / "batch_status.json").values()} == {"ok"}

    # The README's next step: the same command without an array measures nothing again and writes batch.md.
    rc, out, err = run_batch_cli("--spec", str(checkout / "teams.toml"), "--data_dir", str(set5),
                                 "--results_dir", str(shared), "--in_process", "--unconfined")
    assert rc == 0 and set(status_lines(err).values()) == {"skipped"}, out + err
    assert (shared / "batch.md").exists() and read_json(shared / "results.json") == results
