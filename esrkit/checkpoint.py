"""Loading weights: safely (never running a pickle), explicitly (never choosing between two sets of
weights silently) and through the model's own ``load_state_dict`` (a team's override runs).

- :func:`read_checkpoint` is the one ``torch.load`` of the kit (``weights_only=True``, CPU).
- :func:`select_state_dict` finds the state_dict inside what was read: the file itself, or one under
  a wrapper key (``params``, ``params_ema``, ``state_dict``, ...), or the one ``state_key`` names.
  Where the file holds two different candidates (``params`` and ``params_ema``) and nothing says
  which, it stops and names them with the flag that chooses. The kit's own training checkpoints
  say it by their format: their model is ``params_ema`` when EMA was on, else ``params``. A team's
  code may choose itself (``if 'params_ema' in loadnet: ... else: ...``): a ``state_key`` of several
  keys reproduces that choice -- the first key the file holds (``""``: the file itself) -- and the
  load report says which it took.
- :func:`load_state` loads it, strictly unless asked otherwise, and on a mismatch says which keys
  are missing, unexpected or wrongly shaped.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from esrkit.errors import KitError, first_line
from esrkit.options import option, options

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")
TRAINING_FORMAT = "esrkit-train-v1"  # written by esrkit.train (see esrkit.training.checkpointing)
MAX_LISTED = 8

StateDict = dict[str, torch.Tensor]
CheckpointFilter = Callable[[StateDict], StateDict]
StateKey = str | tuple[str, ...]  # a dotted key, or several: the first the checkpoint holds ("": the file itself)


def read_checkpoint(path: str | Path, what: str = "weights") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one-line errors naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{what} file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on the pickle protocol: the error below says what matters
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = next((line for line in str(exc).splitlines() if "global" in line.lower()), None)
        if blocked is not None:  # a real pickle that names code to run
            raise KitError(
                f"refusing to load {path}: it holds pickled objects other than tensors, and loading it "
                f"could run arbitrary code (weights_only=True). Re-save it as a state_dict: "
                f"torch.save(model.state_dict(), PATH). Detail: {blocked.strip()}"
            ) from None
        if _plain_pickle_protocol(path) is not None:
            raise KitError(
                f"refusing to load {path}: it is a plain Python pickle (protocol {_plain_pickle_protocol(path)}), not "
                f"a file written by torch.save, and unpickling it could run arbitrary code. Re-save the weights with "
                f"torch.save(model.state_dict(), PATH)"
            ) from None
        raise KitError(f"cannot read {path} as a PyTorch checkpoint (not a .pth file?): it is not a valid pickle") from None
    except Exception as exc:  # torch.load of a file that is not a checkpoint raises many types (KeyError for text)
        raise KitError(
            f"cannot read {path} as a PyTorch checkpoint (truncated or not a .pth file?): "
            f"{first_line(exc, with_type=not str(exc))}"
        ) from None


def _plain_pickle_protocol(path: Path) -> int | None:
    """The protocol of a file that starts like a pickle of protocol 3 or later (``pickle.dump``'s defaults; torch.save
    writes a zip archive, or protocol 2 in its legacy format), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 and 3 <= head[1] <= 5 else None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _candidates(obj: Mapping, prefix: str = "") -> dict[str, StateDict]:
    """Every state_dict reachable through wrapper keys, by dotted path (``params``, ``state_dict.model``)."""
    found: dict[str, StateDict] = {}
    for key in WRAPPER_KEYS:
        value = obj.get(key)
        if _is_state_dict(value):
            found[prefix + key] = dict(value)
        elif isinstance(value, Mapping):
            found.update(_candidates(value, f"{prefix}{key}."))
    return found


def _same_tensors(a: StateDict, b: StateDict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _strip_module_prefix(state: StateDict) -> StateDict:
    if all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _describe(found: Mapping[str, StateDict]) -> str:
    return ", ".join(f"{k} ({len(v)} tensors)" for k, v in found.items())


def state_key_problem(keys: tuple[str, ...]) -> str | None:
    """Why a list of state keys cannot be a choice (None: it can): each named once, ``""`` only last."""
    if not keys:
        return "give at least one key"
    if len(set(keys)) != len(keys):
        return "a key is named twice"
    if "" in keys[:-1]:
        return '"" (the file itself) always holds: it can only be the last'
    if any(part == "" for key in keys if key for part in key.split(".")):
        return "a dotted key has an empty part"
    return None


def _holds(obj: object, state_key: str) -> bool:
    """Whether the dotted ``state_key`` is in ``obj`` (``""``: the file itself, always)."""
    value = obj
    for part in state_key.split(".") if state_key else ():
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def _first_held(obj: object, keys: tuple[str, ...], source: str) -> tuple[StateDict, str | None]:
    """The state_dict at the first of ``keys`` that ``obj`` holds, as a team's ``if KEY in ckpt`` chain takes it."""
    for key in keys:
        if not _holds(obj, key):
            continue
        if key:
            return select_state_dict(obj, key, source)
        if not _is_state_dict(obj):
            raise KitError(f"{source} holds none of {', '.join(repr(k) for k in keys[:-1])}, and the file itself "
                           f"({type(obj).__name__}) is not a state_dict of tensors: fix {option('state_key')}")
        return _strip_module_prefix(dict(obj)), None  # type: ignore[arg-type]
    found = sorted(map(str, obj))[:MAX_LISTED] if isinstance(obj, Mapping) else []
    raise KitError(f"{source} holds none of {', '.join(repr(k) for k in keys)} (its keys: "
                   f"{', '.join(found) or 'none'}): fix {option('state_key')}")


def select_state_dict(obj: object, state_key: StateKey | None = None,
                      source: str = "checkpoint") -> tuple[StateDict, str | None]:
    """The state_dict inside a checkpoint, and where it was (None: the file itself is one).

    ``state_key`` (dotted for nested wrappers, e.g. ``state_dict.model``) names it; several keys (a tuple)
    take the first the file holds; without one the choice must be unambiguous (see the module docstring).
    A ``module.`` prefix is stripped.
    """
    if isinstance(state_key, tuple):
        return _first_held(obj, state_key, source)
    if state_key:
        value: object = obj
        for part in state_key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                keys = sorted(map(str, value))[:MAX_LISTED] if isinstance(value, Mapping) else []
                raise KitError(f"{source} has no {state_key!r} (its keys: {', '.join(keys) or 'none'}): fix {option('state_key')}")
            value = value[part]
        if not _is_state_dict(value):
            raise KitError(f"{source}[{state_key!r}] holds {type(value).__name__}, not a state_dict of tensors: "
                           f"fix {option('state_key')}")
        return _strip_module_prefix(dict(value)), state_key  # type: ignore[arg-type]
    if _is_state_dict(obj):
        return _strip_module_prefix(dict(obj)), None  # type: ignore[arg-type]
    if not isinstance(obj, Mapping):
        raise KitError(f"{source} holds {type(obj).__name__}, not a state_dict of tensors")
    found = _candidates(obj)
    if not found:
        raise KitError(
            f"{source} is not a state_dict and has none of the usual wrappers ({', '.join(WRAPPER_KEYS)}); "
            f"its top-level keys are {sorted(map(str, obj))[:MAX_LISTED]}: name the one holding the weights "
            f"with {option('state_key')}"
        )
    if obj.get("format") == TRAINING_FORMAT and ("params_ema" in found or "params" in found):
        key = "params_ema" if "params_ema" in found else "params"
        return _strip_module_prefix(found[key]), key
    first_key, first = next(iter(found.items()))
    if all(_same_tensors(first, other) for other in found.values()):
        return _strip_module_prefix(first), first_key
    choices = " or ".join(option("state_key", k) for k in found)
    raise KitError(f"{source} holds {len(found)} different sets of weights ({_describe(found)}) and nothing says "
                   f"which one is the model: choose with {choices}")


@dataclass(frozen=True)
class LoadReport:
    """What loading did: where the state_dict was (and of which keys it was the first held), and the keys a
    non-strict load left out; or the team's own method that loaded the file (``method``)."""

    state_key: str | None
    strict: bool
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    chosen_from: tuple[str, ...] = ()  # the state keys of a choice: state_key is the first the file held
    method: str | None = None

    def describe(self) -> str:
        if self.method is not None:
            return (f"loaded by the team's own model.{self.method}(path), not by the kit: how it reads the file and "
                    f"how strictly it loads are the team's")
        where = f"['{self.state_key}']" if self.state_key else "the file itself"
        if self.chosen_from:
            keys = ", ".join(f"'{k}'" if k else "the file itself" for k in self.chosen_from)
            where += f" (the first of {keys} the file holds, as the team's code chooses)"
        text = f"state_dict {where}, strict={self.strict}, weights_only=True"
        if self.missing or self.unexpected:
            text += f"; non-strict: {_listed('missing', list(self.missing))}{', ' if self.missing and self.unexpected else ''}" \
                    f"{_listed('unexpected', list(self.unexpected))}"
        return text


def _listed(label: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {label}: {', '.join(items[:MAX_LISTED])}{more}"


def key_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True) -> str | None:
    """What does not fit between ``model`` and ``state`` (None: it fits). Non-strict: wrong shapes only."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state] if strict else []
    unexpected = [k for k in state if k not in expected] if strict else []
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = [p for p in (_listed("missing", missing), _listed("unexpected", unexpected),
                         _listed("wrong shape", wrong_shape)) if p]
    return "; ".join(parts) or None


def _network_options() -> str:
    return options("weights", "class_name", "init_args", "init_kwargs")


def load_state(model: nn.Module, state: StateDict, *, strict: bool = True, state_key: str | None = None,
               source: str = "checkpoint") -> LoadReport:
    """``model.load_state_dict(state, strict=strict)`` -- the model's own method, a team's override included.

    Where the model keeps ``nn.Module``'s method, the keys are compared first so that a mismatch is
    one line naming the keys (``strict=False`` still refuses wrongly shaped tensors, as torch does).
    """
    own_method = type(model).load_state_dict is nn.Module.load_state_dict
    if own_method:
        problem = key_mismatch(model, state, strict)
        if problem:
            only_missing = strict and key_mismatch(model, state, strict=False) is None and not set(state) - set(model.state_dict())
            fix = (f"if the team's instructions load it with strict=False, give {option('non_strict')}"
                   if only_missing else f"check {_network_options()}: they must describe the network these weights "
                                        f"were saved from")
            raise KitError(f"{source} does not fit {type(model).__name__}: {problem} -- {fix}")
    try:
        result = model.load_state_dict(state, strict=strict)
    except Exception as exc:  # a team's own load_state_dict can raise anything
        raise KitError(f"{source} does not load into {type(model).__name__} ({first_line(exc)}): check "
                       f"{_network_options()}") from None
    missing = tuple(getattr(result, "missing_keys", ()) or ())
    unexpected = tuple(getattr(result, "unexpected_keys", ()) or ())
    return LoadReport(state_key, strict, missing, unexpected)


def load_weights(model: nn.Module, path: str | Path, *, state_key: StateKey | None = None, strict: bool = True,
                 checkpoint_filter: CheckpointFilter | None = None) -> LoadReport:
    """Read ``path``, pick its state_dict, map its keys (``checkpoint_filter``) and load it into ``model``."""
    state, where = select_state_dict(read_checkpoint(path), state_key, source=str(path))
    if checkpoint_filter is not None:
        state = checkpoint_filter(state)
    report = load_state(model, state, strict=strict, state_key=where, source=str(path))
    return replace(report, chosen_from=state_key) if isinstance(state_key, tuple) else report


def load_by_method(model: nn.Module, path: str | Path, method: str) -> LoadReport:
    """``model.<method>(path)``: the team's own loading, where its code loads the weights file that way."""
    loader = getattr(model, method, None)
    if not callable(loader):
        similar = sorted(n for n in dir(model)
                         if "load" in n.lower() and not n.startswith("_") and not hasattr(nn.Module, n))
        hint = f" (its methods that load: {', '.join(similar[:6])})" if similar else ""
        raise KitError(f"{type(model).__name__} has no method {method!r}{hint}: fix {option('load_method')}")
    try:
        loader(str(path))
    except Exception as exc:  # the team's own loading code can raise anything
        raise KitError(f"{path}: {type(model).__name__}.{method}(path) raised {first_line(exc)}") from None
    return LoadReport(None, strict=False, method=method)
