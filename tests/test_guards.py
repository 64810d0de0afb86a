"""The last nets of every command: an exception no check foresaw is one ``internal error:`` line with its own exit
code (70, not the 1 that means "a rule / a team failed") and the traceback in a log file; a Ctrl-C while the
command is still importing torch is one line and exit 130. Both printed a traceback on the kit before them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from esrkit.cli import EXIT_INTERNAL, run_guarded

REPO = Path(__file__).resolve().parent.parent
# Runs a command with ``import torch`` raising KeyboardInterrupt: what a Ctrl-C in its first seconds does.
CTRL_C_DURING_IMPORTS = """
import builtins, runpy, sys
real_import = builtins.__import__
def interrupted_import(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupted_import
sys.argv = sys.argv[1:]
if sys.argv[0].endswith(".py"):
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("command", [["test_demo.py"], ["esrkit.train", "--train_dir", "x"], ["esrkit.submission", "check"],
                                     ["benchmarks", "--complexity_only"]])
def test_ctrl_c_while_importing_is_one_line_and_exit_130(command, tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", CTRL_C_DURING_IMPORTS, *command], cwd=REPO, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 130, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), done.stderr


def test_an_unforeseen_exception_is_one_line_exit_70_and_a_log_with_the_traceback(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ESRKIT_LOG_DIR", str(tmp_path / "logs"))

    def body() -> int:
        return {"a": 1}["b"]  # a bug: KeyError

    assert run_guarded(body) == EXIT_INTERNAL == 70
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internal error: KeyError: 'b'"), err
    (log,) = (tmp_path / "logs").iterdir()
    assert str(log) in err[0]
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and 'return {"a": 1}["b"]' in text
