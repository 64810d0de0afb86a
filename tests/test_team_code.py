"""A team's code that tries to end the process (``sys.exit`` at import, ``os._exit`` in its forward) is a failure of
that team, reported in one line, everywhere: test_demo.py exits 2 (not 0 with no output), a batch goes on with the
next team and writes its table. Each case ended the kit's process on the kit before esrkit/teamcode.py. A
constructor that needs a GPU the machine lacks is said to need one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import test_demo
from esrkit.api import entry_from_spec
from esrkit.errors import KitError
from esrkit.submission.__main__ import main as submission
from tests.conftest import TOY_NET, toy_team

def team_file(folder: Path, name: str, at_import: str = "", in_forward: str = "") -> Path:
    """The toy team with ``at_import`` after its imports and ``in_forward`` at the top of its forward."""
    source = "import os\nimport sys\n" + TOY_NET.replace("class Toy", f"{at_import}\n\n\nclass Toy").replace(
        "    def forward(self, x):\n", f"    def forward(self, x):\n        {in_forward or 'pass'}\n")
    return toy_team(folder, f"{name}.py", source)


@pytest.mark.parametrize("at_import, in_forward", [("sys.exit(0)", ""), ("", "os._exit(0)"), ("", "exit()")])
def test_test_demo_reports_a_team_that_exits(tmp_path, two_image_benchmark, capsys, at_import, in_forward) -> None:
    model = team_file(tmp_path / "sub", "team31_Quitter", at_import, in_forward)
    code = test_demo.main(["--model_file", str(model), "--data_range", "1.0", "--data_dir", str(two_image_benchmark),
                           "--results_dir", str(tmp_path / "out"), "--save_dir", str(tmp_path / "sr"), "--runs", "0",
                           "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and "team31_Quitter.py tried to end the process" in err[0]
    assert not (tmp_path / "out" / "results.json").exists()


def test_an_in_process_batch_goes_on_after_a_team_that_exits(tmp_path, two_image_benchmark, capsys) -> None:
    sub = tmp_path / "sub"
    team_file(sub, "team31_Quitter", at_import="sys.exit(0)")
    team_file(sub, "team32_Fine")
    code = submission(["batch", "--models_dir", str(sub / "models"), "--data_range", "1.0", "--data_dir",
                       str(two_image_benchmark), "--results_dir", str(tmp_path / "out"), "--in_process", "--unconfined", "--quiet"])
    assert code == 1  # a team failed; the batch itself ran to its end
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results) == ["32_Fine"]
    table = (tmp_path / "out" / "batch.md").read_text()
    assert "team31_Quitter.py tried to end the process" in table and "| 32_Fine | ok |" in table


@pytest.mark.parametrize("package, hint", [
    ("basicsr", "torch==2.1.2 torchvision==0.16.2"),
    ("mamba_ssm", "a CUDA machine"),
    ("no_such_package_xyz", "pip install no_such_package_xyz"),
])
def test_a_missing_package_names_the_install_that_works_and_the_readme_section(tmp_path, package, hint) -> None:
    """A plain "pip install torchvision / basicsr" beside the kit's torch gives a build that does not import: the
    message says what works, and points to the README section that says what was checked."""
    from esrkit.errors import KitError
    from esrkit.paths import REPO_ROOT
    from esrkit.teamfile import import_team_file

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    path = tmp_path / "models" / "team40_Needs.py"
    path.parent.mkdir()
    path.write_text(f"import {package}\n")
    with pytest.raises(KitError) as info:
        import_team_file(path)
    message = str(info.value)
    assert f"team40_Needs.py imports {package}, which is not installed here: " in message and hint in message
    assert message.endswith('see README, "Teams that need other packages"')
    assert "### Teams that need other packages" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


JITERATOR = "torch.cuda.jiterator._create_jit_fn('template <typename T> T copy(T x) { return x; }')(torch.ones(1))"


def constructor_calling(line: str) -> str:
    """The toy team whose constructor runs ``line`` first."""
    return TOY_NET.replace("        super().__init__()\n", f"        super().__init__()\n        {line}\n")


@pytest.mark.skipif(torch.cuda.is_available(), reason="jiterator runs on this machine's GPU")
def test_a_cuda_only_operation_is_named_as_such_not_as_wrong_arguments(tmp_path, two_image_benchmark, capsys) -> None:
    """torch's jiterator raises AssertionError off CUDA: the line says the operation needs a GPU machine (it said
    "check the class and its constructor arguments"); any other constructor failure keeps that hint."""
    model = toy_team(tmp_path / "sub", "team32_Jit.py", constructor_calling(JITERATOR))
    code = test_demo.main(["--model_file", str(model), "--class_name", "Toy", "--data_range", "1.0",
                           "--data_dir", str(two_image_benchmark), "--results_dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (
        "error: Jit: building Toy() raised AssertionError: Jiterator is only supported on CUDA and ROCm GPUs, none are "
        "available. (a CUDA-only operation, which needs a GPU machine: this one has no CUDA GPU "
        "(torch.cuda.is_available() is False); run this entry on a machine with one)"), err
    assert not (tmp_path / "out" / "results.json").exists()  # only the run log says the run was started
    other = toy_team(tmp_path / "other", "team33_Odd.py", constructor_calling("raise ValueError('dim must be even')"))
    with pytest.raises(KitError) as caught:
        entry_from_spec(model_file=other, class_name="Toy", data_range=1.0).build()
    assert str(caught.value) == ("Odd: building Toy() raised ValueError: dim must be even (check the class and its "
                                 "constructor arguments)")
