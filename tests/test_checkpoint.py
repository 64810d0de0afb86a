"""Weights loading: safe (weights_only), strict, tolerant of the usual wrappers, and clear when it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from esrkit.checkpoint import load_weights, read_checkpoint
from esrkit.errors import KitError
from esrkit.registry import get_entry


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
    model = load_weights(get_entry("MLRN-entire").build(), tmp_path / "w.pth")
    for k, v in model.state_dict().items():
        assert torch.equal(v, mlrn_state[k])


def test_prefers_ema_weights(tmp_path: Path, mlrn_state) -> None:
    ema = {k: v + 1 for k, v in mlrn_state.items()}
    torch.save({"params": mlrn_state, "params_ema": ema}, tmp_path / "w.pth")
    assert torch.equal(read_checkpoint(tmp_path / "w.pth")["conv_1.bias"], ema["conv_1.bias"])


def test_checkpoint_saved_from_cuda_loads_on_cpu(official_weights_dir: Path) -> None:
    """The official IMDN file was saved from CUDA: plain torch.load fails on a CPU-only machine."""
    state = read_checkpoint(official_weights_dir / "imdn_ntire2022_baseline.pth")
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
        load_weights(get_entry("MLRN-entire").build(), official_weights_dir / "rfdn_ntire2023_team00.pth")
    msg = str(err.value)
    assert "does not fit MLRN" in msg and "missing" in msg and "unexpected" in msg and "fea_conv.weight" in msg


def test_wrong_shape_is_reported(tmp_path: Path, mlrn_state) -> None:
    mlrn_state["conv_1.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(mlrn_state, tmp_path / "w.pth")
    with pytest.raises(KitError, match=r"1 wrong shape: conv_1.weight \(8, 3, 3, 3\) != \(50, 3, 3, 3\)"):
        load_weights(get_entry("MLRN-entire").build(), tmp_path / "w.pth")


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
        read_checkpoint(tmp_path / "other.pth")
