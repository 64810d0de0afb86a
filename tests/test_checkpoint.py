"""Weights loading: safe (weights_only), strict, tolerant of the usual wrappers, never a silent choice
between two sets of weights, through the model's own load_state_dict, and clear when it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from torch import nn

from esrkit.checkpoint import TRAINING_FORMAT, load_weights, read_checkpoint, select_state_dict
from esrkit.errors import KitError
from esrkit.registry import get_entry


def _build() -> nn.Module:
    return get_entry("MLRN-entire").build()


@pytest.fixture()
def mlrn_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return get_entry("MLRN-entire").build().state_dict()


@pytest.mark.parametrize("wrapper", [None, "params", "params_ema", "state_dict", "model_state_dict", "model", "net"])
@pytest.mark.parametrize("data_parallel", [False, True])
def test_wrappers_and_module_prefix(tmp_path: Path, mlrn_state, wrapper, data_parallel) -> None:
    state = {f"module.{k}" if data_parallel else k: v for k, v in mlrn_state.items()}
    obj = state if wrapper is None else {wrapper: state, "iter": torch.tensor(5)}
    torch.save(obj, tmp_path / "w.pth")
    model = _build()
    report = load_weights(model, tmp_path / "w.pth")
    assert report.state_key == wrapper and report.strict
    for k, v in model.state_dict().items():
        assert torch.equal(v, mlrn_state[k])


def test_two_different_sets_of_weights_are_never_chosen_silently(tmp_path: Path, mlrn_state) -> None:
    """params and params_ema that differ: an error naming both and the flag; --state_key chooses either."""
    ema = {k: v + 1 for k, v in mlrn_state.items()}
    torch.save({"params": mlrn_state, "params_ema": ema}, tmp_path / "w.pth")
    with pytest.raises(KitError) as err:
        load_weights(_build(), tmp_path / "w.pth")
    assert "2 different sets of weights" in str(err.value)
    assert "--state_key params_ema or --state_key params" in str(err.value)
    for key, want in (("params", mlrn_state), ("params_ema", ema)):
        model = _build()
        assert load_weights(model, tmp_path / "w.pth", state_key=key).state_key == key
        assert torch.equal(model.state_dict()["conv_1.bias"], want["conv_1.bias"])
    with pytest.raises(KitError, match=r"has no 'params_emma' \(its keys: params, params_ema\): fix --state_key"):
        load_weights(_build(), tmp_path / "w.pth", state_key="params_emma")


def test_identical_copies_and_the_kits_training_checkpoints_are_not_ambiguous(tmp_path: Path, mlrn_state) -> None:
    """Two wrappers holding the same tensors are one set of weights; a training checkpoint of this kit says by
    its format that its model is params_ema (when EMA was on)."""
    torch.save({"params": mlrn_state, "params_ema": {k: v.clone() for k, v in mlrn_state.items()}}, tmp_path / "same.pth")
    assert load_weights(_build(), tmp_path / "same.pth").state_key == "params_ema"
    ema = {k: v + 1 for k, v in mlrn_state.items()}
    torch.save({"format": TRAINING_FORMAT, "step": 7, "params": mlrn_state, "params_ema": ema}, tmp_path / "last.pth")
    state, where = select_state_dict(read_checkpoint(tmp_path / "last.pth"))
    assert where == "params_ema" and torch.equal(state["conv_1.bias"], ema["conv_1.bias"])


def test_a_models_own_load_state_dict_runs(tmp_path: Path) -> None:
    """A team's class that fuses branches in its own load_state_dict gets its checkpoint as is (no pre-check)."""

    class Fusing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def load_state_dict(self, state, strict=True, assign=False):  # noqa: ANN001
            fused = {"conv.weight": state["a.weight"] + state["b.weight"], "conv.bias": state["a.bias"] + state["b.bias"]}
            return super().load_state_dict(fused, strict=strict)

    parts = {f"{n}.{k}": torch.full_like(v, 1.0 if n == "a" else 2.0)
             for n in "ab" for k, v in nn.Conv2d(3, 3, 1).state_dict().items()}
    torch.save(parts, tmp_path / "branches.pth")
    model = Fusing()
    load_weights(model, tmp_path / "branches.pth")
    assert torch.equal(model.conv.weight, torch.full((3, 3, 1, 1), 3.0))


def test_non_strict_reports_what_it_left_out(tmp_path: Path, mlrn_state) -> None:
    del mlrn_state["conv_1.bias"]
    mlrn_state["extra.weight"] = torch.zeros(1)
    torch.save(mlrn_state, tmp_path / "w.pth")
    with pytest.raises(KitError, match="1 missing: conv_1.bias; 1 unexpected: extra.weight"):
        load_weights(_build(), tmp_path / "w.pth")
    report = load_weights(_build(), tmp_path / "w.pth", strict=False)
    assert report.missing == ("conv_1.bias",) and report.unexpected == ("extra.weight",)
    assert "non-strict: 1 missing: conv_1.bias, 1 unexpected: extra.weight" in report.describe()


def test_checkpoint_saved_from_cuda_loads_on_cpu(official_weights_dir: Path) -> None:
    """The official IMDN file was saved from CUDA: plain torch.load fails on a CPU-only machine."""
    state, _ = select_state_dict(read_checkpoint(official_weights_dir / "imdn_ntire2022_baseline.pth"))
    assert all(v.device.type == "cpu" for v in state.values())


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path, mlrn_state) -> None:
    marker = tmp_path / "pwned"
    torch.save({"params": mlrn_state, "evil": _RunsCode(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(KitError, match=r"refusing to load .*evil\.pth.*weights_only"):
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_wrong_architecture_names_the_keys(official_weights_dir: Path) -> None:
    with pytest.raises(KitError) as err:
        load_weights(_build(), official_weights_dir / "rfdn_ntire2023_team00.pth")
    msg = str(err.value)
    assert "does not fit MLRN" in msg and "missing" in msg and "unexpected" in msg and "fea_conv.weight" in msg


def test_wrong_shape_is_reported(tmp_path: Path, mlrn_state) -> None:
    mlrn_state["conv_1.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(mlrn_state, tmp_path / "w.pth")
    with pytest.raises(KitError, match=r"1 wrong shape: conv_1.weight \(8, 3, 3, 3\) != \(50, 3, 3, 3\)"):
        load_weights(_build(), tmp_path / "w.pth")


def test_missing_truncated_and_foreign_files(tmp_path: Path, mlrn_state) -> None:
    with pytest.raises(KitError, match="weights file not found"):
        read_checkpoint(tmp_path / "nope.pth")
    torch.save(mlrn_state, tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match=r"cannot read .*cut\.pth"):
        read_checkpoint(tmp_path / "cut.pth")
    for name, content in (("notes.txt", b"hi\n"), ("empty.pth", b""), ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(64))):
        (tmp_path / name).write_bytes(content)  # not checkpoints at all: text, nothing, an image
        with pytest.raises(KitError, match=f"cannot read .*{name}"):
            read_checkpoint(tmp_path / name)
    torch.save({"optimizer": {"lr": 0.1}, "epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(KitError, match="none of the usual wrappers"):
        select_state_dict(read_checkpoint(tmp_path / "other.pth"))


class _CallsSystem:
    def __reduce__(self):  # what a malicious "weights" file does: call os.system when unpickled
        return (os.system, ("echo this must never run",))


def test_a_plain_pickle_that_would_run_code_is_refused_as_such(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "weights.pth"
    path.write_bytes(pickle.dumps(_CallsSystem()))  # pickle.dump's default protocol, not torch.save's format
    with pytest.raises(KitError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "refusing to load" in message and "plain Python pickle" in message and "arbitrary code" in message
    assert "not a valid pickle" not in message


def test_batch_hints_name_spec_keys_not_flags(tmp_path: Path, mlrn_state) -> None:
    from esrkit.options import named_as

    path = tmp_path / "two.pth"
    torch.save({"params": mlrn_state, "params_ema": {k: v + 1 for k, v in mlrn_state.items()}}, path)
    with named_as("spec"), pytest.raises(KitError) as info:
        select_state_dict(read_checkpoint(path), source=str(path))
    assert 'state_key = "params" (in the spec)' in str(info.value) and "--state_key" not in str(info.value)


def test_a_choice_of_state_keys_takes_the_first_the_file_holds_and_says_so(tmp_path: Path, mlrn_state) -> None:
    """A team's `if 'params_ema' in loadnet: ... else: ...`: the kit reproduces the choice the team's code makes."""
    ema = {k: v + 1 for k, v in mlrn_state.items()}
    keys = ("params_ema", "params", "")
    for content, want, chosen in (({"params": mlrn_state, "params_ema": ema}, ema, "params_ema"),
                                  ({"params": mlrn_state}, mlrn_state, "params"), (mlrn_state, mlrn_state, None)):
        torch.save(content, tmp_path / "w.pth")
        model = _build()
        report = load_weights(model, tmp_path / "w.pth", state_key=keys)
        assert report.state_key == chosen and report.chosen_from == keys
        assert torch.equal(model.state_dict()["conv_1.bias"], want["conv_1.bias"])
        assert "the first of 'params_ema', 'params', the file itself the file holds" in report.describe()
    torch.save({"other": mlrn_state}, tmp_path / "w.pth")
    with pytest.raises(KitError, match=r"holds none of 'params_ema', 'params' \(its keys: other\): fix --state_key"):
        load_weights(_build(), tmp_path / "w.pth", state_key=("params_ema", "params"))
    with pytest.raises(KitError, match=r"holds none of 'params_ema', and the file itself \(dict\) is not a state_dict"):
        load_weights(_build(), tmp_path / "w.pth", state_key=("params_ema", ""))


def test_state_key_choices_that_cannot_be_one() -> None:
    from esrkit.checkpoint import state_key_problem

    assert state_key_problem(("params_ema", "params", "")) is None
    assert "only be the last" in state_key_problem(("", "params"))
    assert "named twice" in state_key_problem(("params", "params"))
    assert "empty part" in state_key_problem(("state_dict..model",))
