"""Spec files as organisers write them: any model id, one bad table that does not stop the others, a file that is
not a spec at all, and the organisers' names (``17_FSANet``, ``00_EFDN_baseline``) without a ``name =`` per team.
Each case failed on the kit before the spec was checked against a schema (a traceback, or the whole file refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

import test_demo
from esrkit.challenge import Convention
from esrkit.errors import KitError
from esrkit.spec import TeamSpec, load_spec_file, resolve
from tests.conftest import toy_team

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "teams.toml"
    path.write_text(text)
    return path


def test_a_model_id_above_99_is_a_team_number(tmp_path) -> None:
    toy_team(tmp_path, "team361_Toy.py")
    spec = load_spec_file(write(tmp_path, '[[team]]\nteam = 361\nmodel_file = "models/team361_Toy.py"\ndata_range = 1.0\n'))
    entry = resolve(spec.select(361))
    assert entry.key == "361_Toy" and entry.weights == tmp_path / "model_zoo" / "team361_Toy.pth"


def test_one_invalid_table_is_an_error_only_for_the_commands_that_select_it(tmp_path, capsys, two_image_benchmark) -> None:
    toy_team(tmp_path, "team07_Toy.py")
    path = write(tmp_path, '[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\ndata_range = 1.0\n\n'
                           '[[team]]\nteam = 8\nmodel_file = "models/team08_Gone.py"\nstate_keys = "params"\n')
    spec = load_spec_file(path)
    assert [t.team for t in spec.teams] == [7] and [t.team for t in spec.invalid] == [8]
    assert resolve(spec.select(7)).key == "07_Toy"
    with pytest.raises(KitError, match=r"\[\[team\]\] #2: unknown key\(s\) state_keys; it takes: team, name"):
        spec.select(8)
    # the whole way through a command: team 7 runs although table #2 is broken
    code = test_demo.main(["--spec", str(path), "--team", "7", "--data_dir", str(two_image_benchmark), "--results_dir",
                           str(tmp_path / "out"), "--no_save", "--runs", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("team = [1, 2]\n", "team = [1, 2] must be a list of [[team]] tables"),
    ("[[team]]\nteam = [1, 2]\nentry = \"EFDN\"\n", "team = [1, 2] must be the organisers' team number"),
    ("year = \"2025\"\n[[team]]\nentry = \"EFDN\"\n", 'year = "2025" must be one of 2022, 2023, 2024, 2025'),
    ("[[team]]\nentry = \"EFDN\"\nstrict = \"no\"\n", 'strict = "no" must be true or false'),
    ("[[team]]\nentry = \"EFDN\"\ndata_range = -1\n", "data_range = -1 must be a positive number"),
    ("[[team]]\nentry = \"EFDN\"\npost_load = \"switch deploy\"\n", "post_load = \"switch deploy\" must be a method name"),
])
def test_a_value_of_the_wrong_kind_is_one_line_naming_it(tmp_path, capsys, text, expected) -> None:
    code = test_demo.main(["--spec", str(write(tmp_path, text)), "--results_dir", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_names_are_the_organisers_without_a_name_key(tmp_path) -> None:
    arch = toy_team(tmp_path, "team17_FSANet_arch.py")
    assert resolve(TeamSpec(model_file=arch, data_range=1.0)).key == "17_FSANet"
    baseline = toy_team(tmp_path, "team00_EFDN.py")
    entry = resolve(TeamSpec(model_file=baseline, data_range=1.0))
    assert Convention.for_run(2025, "ntire2024").key(entry) == "00_EFDN_baseline"
    assert Convention.for_run(None, "benchmark").key(entry) == "00_EFDN"  # the kit's own convention: no baselines


def test_a_batch_reports_an_invalid_table_as_a_failed_team_and_measures_the_others(tmp_path, two_image_benchmark,
                                                                                   capsys) -> None:
    from esrkit.submission.__main__ import main as submission

    toy_team(tmp_path, "team07_Toy.py")
    path = write(tmp_path, 'year = 2025\n[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\ndata_range = 1.0\n\n'
                           '[[team]]\nteam = 361\nmodel_file = "models/team361_Gone.py"\nstrict = "yes"\n')
    code = submission(["batch", "--spec", str(path), "--data_dir", str(two_image_benchmark), "--results_dir",
                       str(tmp_path / "out"), "--in_process", "--unconfined", "--quiet"])
    assert code == 1  # one team failed; the batch ran to its end
    import json

    assert list(json.loads((tmp_path / "out" / "results.json").read_text())) == ["07_Toy"]
    table = (tmp_path / "out" / "batch.md").read_text()
    assert "| 07_Toy | ok |" in table and 'strict = "yes" must be true or false' in table
    status = json.loads((tmp_path / "out" / "batch_status.json").read_text())
    assert status["team 361 ([[team]] #2)"]["status"] == "failed"
    assert (tmp_path / "out" / "results.html").is_file() and (tmp_path / "out" / "esrkit.log").is_file()
