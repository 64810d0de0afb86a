"""The README's commands, run as written from a checkout, never write into the checkout's tracked tree: every path
they write (an output flag's value, relative to the checkout) is one git ignores. `my_submission/` and `team23.zip`
of an earlier README landed in the checkout, untracked and unignored."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from esrkit.paths import REPO_ROOT

OUTPUT_FLAGS = ("--out", "--results_dir", "--save_dir", "--markdown", "--csv", "--latex", "--json", "--plot", "--html",
                "--out_dir", "--cache_dir", "--factsheet")


def written_paths() -> list[str]:
    """The relative paths the README's bash examples write to (output flags' values)."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    paths = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        command = block.replace("\\\n", " ")
        for line in command.splitlines():
            words = shlex.split(line.split("#", 1)[0]) if line.strip() and not line.lstrip().startswith("#") else []
            for flag, value in zip(words, words[1:]):
                if flag in OUTPUT_FLAGS and not value.startswith(("/", "..", "$", "~")):
                    paths.append(value)
    return paths


def test_every_path_the_readme_writes_is_ignored_by_git() -> None:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = written_paths()
    assert "runs/my_submission" in paths and "runs/team23.zip" in paths  # the examples are read
    # and what test_demo.py writes into the folder it runs in by default (the official kit's habit)
    paths += ["results.json", "results.txt", "results/", "esrkit.log", ".esrkit.lock"]
    probes = [p.rstrip("/") + ("/x" if not re.search(r"\.\w+$", p) else "") for p in paths]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=REPO_ROOT, capture_output=True,
                             text=True).stdout.split()
    assert sorted(set(probes) - set(ignored)) == []
