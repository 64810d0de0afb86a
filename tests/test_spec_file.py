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


# --- values TOML spells otherwise: None, a choice of state keys, the team's own loading, any name ------------


def test_init_none_passes_none_and_says_it_once(tmp_path) -> None:
    arch = toy_team(tmp_path, "team07_Toy.py")
    spec = load_spec_file(write(tmp_path, '[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\nclass_name = "Toy"\n'
                                          'init_kwargs = { a = 1 }\ninit_none = ["b"]\n'))
    assert spec.teams[0].init_kwargs == {"a": 1, "b": None} and spec.teams[0].model_file == arch
    clash = load_spec_file(write(tmp_path, '[[team]]\nteam = 7\nmodel_file = "m.py"\nclass_name = "Toy"\n'
                                           'init_kwargs = { b = 1 }\ninit_none = ["b"]\n'))
    assert "init_none names b, which init_kwargs sets too" in clash.invalid[0].message
    for text, expected in (('init_none = ["b"]\n', "constructor arguments need the class they are for"),
                           ('class_name = "Toy"\ninit_none = ["not a name"]\n', 'init_none[0] = "not a name" must be')):
        bad = load_spec_file(write(tmp_path, f'[[team]]\nteam = 7\nmodel_file = "m.py"\n{text}'))
        assert expected in bad.invalid[0].message, bad.invalid


def test_state_key_lists_and_load_method_are_checked(tmp_path) -> None:
    spec = load_spec_file(write(tmp_path, '[[team]]\nteam = 7\nmodel_file = "m.py"\nstate_key = ["params_ema", "params"]\n'
                                          '[[team]]\nteam = 8\nmodel_file = "m.py"\nload_method = "load_weights"\n'))
    assert spec.teams[0].state_key == ("params_ema", "params") and spec.teams[1].load_method == "load_weights"
    for text, expected in (('state_key = ["", "params"]\n', '"" (the file itself) always holds: it can only be the last'),
                           ('state_key = ["params", "params"]\n', "a key is named twice"),
                           ('state_key = []\n', "state_key = [] must be where the state_dict sits"),
                           ('load_method = "load_weights"\nstate_key = "params"\n',
                            "with load_method the team's load_weights() reads the weights file itself"),
                           ('load_method = "load weights"\n', 'load_method = "load weights" must be a method name')):
        bad = load_spec_file(write(tmp_path, f'[[team]]\nteam = 7\nmodel_file = "m.py"\n{text}'))
        assert expected in bad.invalid[0].message, bad.invalid


def test_any_name_is_kept_for_display_and_keyed_safely(tmp_path) -> None:
    toy_team(tmp_path, "team07_Toy.py")
    spec = load_spec_file(write(tmp_path, '[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\n'
                                          'name = "../../victim"\ndata_range = 1.0\n'))
    entry = resolve(spec.select(7))
    assert (entry.name, entry.key, entry.display_name) == ("../../victim", "07_victim", "07_../../victim")


def test_a_byte_order_mark_at_the_start_of_a_spec_is_accepted(tmp_path) -> None:
    toy_team(tmp_path, "team07_Toy.py")
    path = tmp_path / "teams.toml"
    path.write_bytes(b'\xef\xbb\xbfyear = 2025\n[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\n')
    spec = load_spec_file(path)
    assert spec.year == 2025 and [t.team for t in spec.teams] == [7]


def _batch(tmp_path, two_image_benchmark, spec, *extra) -> int:
    from esrkit.submission.__main__ import main as submission

    return submission(["batch", "--spec", str(spec), "--data_dir", str(two_image_benchmark), "--results_dir",
                       str(tmp_path / "out"), "--in_process", "--unconfined", "--quiet", *extra])


def test_a_toml_date_among_constructor_arguments_is_one_invalid_table(tmp_path, two_image_benchmark, capsys) -> None:
    toy_team(tmp_path, "team07_Toy.py")
    path = write(tmp_path, 'year = 2025\n[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\ndata_range = 1.0\n\n'
                           '[[team]]\nteam = 8\nmodel_file = "models/team07_Toy.py"\nclass_name = "Toy"\n'
                           'init_kwargs = { seed = 1979-05-27 }\n\n'
                           '[[team]]\nteam = 9\nmodel_file = "models/team07_Toy.py"\nclass_name = "Toy"\n'
                           'init_args = [[1, 07:32:00]]\n')
    assert _batch(tmp_path, two_image_benchmark, path) == 1  # two teams failed; the batch ran to its end
    table = (tmp_path / "out" / "batch.md").read_text()
    assert "| 07_Toy | ok |" in table
    assert "init_kwargs.seed = 1979-05-27 must be a string, number, boolean, list or table" in table
    assert "init_args[0][1] = 07:32:00 must be a string, number, boolean, list or table" in table


def test_an_invalid_table_without_a_team_number_is_reported_by_exactly_one_shard(tmp_path, two_image_benchmark,
                                                                                 capsys) -> None:
    """The shard is the one a hash of the table's position gives (esrkit.submission.shards.invalid_shard): here
    shard 1, which holds no valid team (team 7 is shard 2's) and still runs to report it."""
    toy_team(tmp_path, "team07_Toy.py")
    path = write(tmp_path, 'year = 2025\n[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\ndata_range = 1.0\n\n'
                           '[[team]]\nmodel_file = "models/team07_Toy.py"\nstrict = "yes"\n')
    assert [t.team for t in load_spec_file(path).invalid] == [None]
    codes = [_batch(tmp_path, two_image_benchmark, path, "--shard", f"{k}/2") for k in (1, 2)]
    shard_tables = {k: tmp_path / "out" / f"batch_shard-{k}-of-2.md" for k in (1, 2)}
    reported = [k for k, md in shard_tables.items() if md.is_file() and "[[team]] #2" in md.read_text()]
    assert codes == [1, 0] and reported == [1], capsys.readouterr()
    assert "| 07_Toy | ok |" in shard_tables[2].read_text()


def test_load_method_must_be_a_method_of_the_network(tmp_path) -> None:
    toy_team(tmp_path, "team07_Toy.py")
    spec = load_spec_file(write(tmp_path, '[[team]]\nteam = 7\nmodel_file = "models/team07_Toy.py"\ndata_range = 1.0\n'
                                          'load_method = "load_weights"\n'))
    with pytest.raises(KitError, match=r"Toy has no method 'load_weights': fix load_method \(in the spec\)"):
        resolve(spec.select(7)).load()


def test_flags_say_a_choice_of_state_keys_too(tmp_path, two_image_benchmark) -> None:
    import json

    import torch

    team = toy_team(tmp_path, "team07_Toy.py")
    weights = tmp_path / "model_zoo" / "team07_Toy.pth"
    torch.save({"params": torch.load(weights)}, weights)
    code = test_demo.main(["--model_file", str(team), "--data_range", "1.0", "--state_key", "params_ema", "params",
                           "--data_dir", str(two_image_benchmark), "--results_dir", str(tmp_path / "out"), "--no_save",
                           "--runs", "0", "--quiet"])
    assert code == 0
    record = json.loads((tmp_path / "out" / "results.json").read_text())["07_Toy"]
    assert record["weights_loading"].startswith("state_dict ['params'] (the first of 'params_ema', 'params' the file "
                                                "holds, as the team's code chooses)")


def test_a_name_a_team_file_registers_is_keyed_safely_too(tmp_path) -> None:
    from tests.conftest import TOY_NET

    source = TOY_NET + ("\n\nfrom esrkit.registry import register_entry\n"
                        "register_entry('../../evil', 41, scale=4, data_range=1.0)(Toy)\n")
    arch = toy_team(tmp_path, "team41_Reg.py", source)
    entry = resolve(TeamSpec(model_file=arch))
    assert (entry.name, entry.key) == ("../../evil", "41_evil")
