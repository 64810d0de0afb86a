"""Training checkpoints: written atomically, read back with ``weights_only=True``.

A training checkpoint is a dict that the kit's own loader also understands: its weights sit under
``params`` (and ``params_ema`` when EMA is on), and its ``format`` says which of them is the model
(``params_ema`` when present: see :func:`esrkit.checkpoint.select_state_dict`), so ``--warm_start``,
evaluation and ``load_weights`` accept it as is. Beside the weights it
holds everything ``--resume`` needs for an exact continuation: optimizer, scheduler, step, the patch
samplers' generator states (one per rank), the global RNG states, the best validation score, the
elapsed training time and the run's config. Only tensors, numbers, strings, lists and dicts are
stored, so nothing is unpickled beyond what ``weights_only`` allows.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esrkit.atomic import atomic_path
from esrkit.checkpoint import TRAINING_FORMAT, read_checkpoint
from esrkit.errors import KitError

FORMAT = TRAINING_FORMAT


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise KitError(f"--ema {decay} is not a decay in (0, 1); use e.g. 0.999, or 0 to turn EMA off")
        self.decay = decay
        self.model = _clone(model)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - self.decay)
        for ema_buf, buf in zip(self.model.buffers(), model.buffers()):
            ema_buf.copy_(buf)


def _clone(model: nn.Module) -> nn.Module:
    clone = copy.deepcopy(model).eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file: ``path`` keeps its previous content on any failure,
    which is a :class:`KitError` naming ``path`` (torch reports a full disk as a RuntimeError)."""
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except (OSError, RuntimeError) as exc:
            raise KitError(f"cannot write {path}: {_write_failure(exc, Path(tmp))}; free some space or choose another "
                           f"--out_dir (the previous file is unchanged)") from None


def _write_failure(exc: BaseException, tmp: Path) -> str:
    """Why a save failed, in words: torch reports a full disk as "[enforce fail at inline_container.cc] ... file write
    failed", which names neither the disk nor the cause."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(tmp.parent).free
        if free < 64 * 2**20 or "write failed" in str(exc):
            return f"the disk is full or refused the write ({free / 2**20:.0f} MiB free on {tmp.parent})"
    return (str(exc).splitlines() or [str(exc)])[0]


def save_weights(path: str | Path, model: nn.Module) -> None:
    """A plain, weights-only ``state_dict`` (CPU tensors), as evaluation and submissions load it."""
    save_checkpoint(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by the trainer (for ``--resume``)."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"--resume {path}: no such file; point it at an out_dir's last.pth or best.pth")
    try:
        state = read_checkpoint(path, what="--resume")
    except KitError as exc:
        raise KitError(f"--resume {path}: not a training checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise KitError(
            f"--resume {path} is not a training checkpoint written by esrkit.train (plain weights?); "
            f"to start a new run from its weights use --warm_start {path}"
        )
    return state


def rng_states() -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device when there is one)."""
    states: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def try_save(path: Path, state: dict[str, Any], what: str) -> bool:
    """Save, but only warn when it fails (disk full...): the previous file stays intact."""
    try:
        save_checkpoint(path, state)
        return True
    except KitError as exc:
        print(f"warning: {what} not written: {exc}; training goes on", file=sys.stderr)
        return False
