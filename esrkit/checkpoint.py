"""Loading weights safely and strictly, with errors that say what does not match."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from esrkit.errors import KitError

# Wrappers seen in challenge submissions, in order of preference (EMA weights first, as timm does).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")
MAX_LISTED = 8


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``path`` without executing pickled code, and unwrap it.

    Accepts a plain state_dict or one wrapped under any of :data:`WRAPPER_KEYS`, with or without a
    ``module.`` prefix (DataParallel), saved on CPU or CUDA.
    """
    path = Path(path)
    if not path.is_file():
        raise KitError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = next((line for line in str(exc).splitlines() if "global" in line.lower()), None)
        if blocked is not None:  # a real pickle that names code to run
            raise KitError(
                f"refusing to load {path}: it holds pickled objects other than tensors, and loading it "
                f"could run arbitrary code (weights_only=True). Re-save it as a state_dict: "
                f"torch.save(model.state_dict(), PATH). Detail: {blocked.strip()}"
            ) from None
        raise KitError(f"cannot read {path} as a PyTorch checkpoint (not a .pth file?): it is not a valid pickle") from None
    except Exception as exc:  # torch.load of a file that is not a checkpoint raises many types (KeyError for text)
        raise KitError(
            f"cannot read {path} as a PyTorch checkpoint (truncated or not a .pth file?): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor dictionary inside a wrapped checkpoint and strip a ``module.`` prefix."""
    while isinstance(obj, dict) and not _is_state_dict(obj):
        wrapper = next((k for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if wrapper is None:
            raise KitError(
                f"{source} is not a state_dict and has none of the usual wrappers "
                f"({', '.join(WRAPPER_KEYS)}); its top-level keys are {sorted(map(str, obj))[:MAX_LISTED]}"
            )
        obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj:
        raise KitError(f"{source} holds {type(obj).__name__}, not a state_dict of tensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_weights(
    model: nn.Module,
    path: str | Path,
    checkpoint_filter: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> nn.Module:
    """Load ``path`` into ``model`` strictly; on a mismatch, say which keys are off and how."""
    state = read_checkpoint(path)
    if checkpoint_filter is not None:
        state = checkpoint_filter(state)
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise a :class:`KitError` listing missing, unexpected and wrongly shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:MAX_LISTED])}{more}")
    raise KitError(
        f"{source} does not fit {type(model).__name__} (wrong architecture or entry?): " + "; ".join(parts)
    )
