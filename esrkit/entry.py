"""An entry as data: an architecture, the arguments it is built with, and how to load and run it.

This is what a challenge entry is for the organisers too -- "a class + constructor arguments +
weights + data range" -- so the kit's registered entries, a team's file described by a submission
spec, ``export`` and ``check`` all read the same object (timm's pattern: no opaque builders).

Loading, in order: build ``arch(*args, **kwargs)``; read the weights file (never running a pickle);
take its state_dict (``state_key``, see :mod:`esrkit.checkpoint`); map foreign key names
(``checkpoint_filter``); load it through the model's own ``load_state_dict`` (``strict``) -- or, where the
team's code loads it through a method of its own (``load_method``, e.g. ``load_weights``), call that method
with the weights path instead, the team's file alone reading it; run the
post-load step (``post_load``: a method such as ``switch_to_deploy``, or ``each:NAME`` for every
submodule that has it), so that everything measured afterwards is the deployed network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from esrkit.checkpoint import CheckpointFilter, LoadReport, StateKey, load_by_method, load_weights
from esrkit.device import cuda_only_hint, cuda_redirected, explain_failure
from esrkit.errors import KitError, first_line
from esrkit.names import safe_name
from esrkit.options import Style, named_as, option, options
from esrkit.paths import MODEL_ZOO, shared_path
from esrkit.teamcode import exits_refused

EACH_PREFIX = "each:"


@dataclass(frozen=True)
class Entry:
    """A challenge entry (see the module docstring).

    ``data_range`` is the value that white maps to at the model's input and output (255 or 1.0);
    getting it wrong is the most common reason an entry scores far below its real quality.
    ``weights`` is the default weights file: a bare name is looked up in ``model_zoo/``.
    ``model_id`` is the kit's registry id, ``team`` the number the organisers assigned (either gives
    the results key); ``source`` is the team's model file (None for the kit's own ``models/``).
    ``redirect_cuda``: the source hard-codes CUDA, so off CUDA its CUDA calls are redirected.
    """

    name: str
    arch: Callable[..., nn.Module] = field(repr=False)
    scale: int
    data_range: float | None  # None only while a team's file has not declared it (check finds it)
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights: str | Path | None = None
    state_key: StateKey | None = None
    strict: bool = True
    post_load: str | None = None
    load_method: str | None = None
    checkpoint_filter: CheckpointFilter | None = field(default=None, repr=False)
    model_id: int | None = None
    team: int | None = None
    tile: int | None = None
    tile_overlap: int = 32
    description: str = ""
    source: Path | None = None
    redirect_cuda: bool = False
    notes: tuple[str, ...] = ()
    option_style: Style = "flags"  # how messages name settings: flags, a spec file's keys (esrkit.options)

    # -- identity ----------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The results.json key: ``f"{team:02}_{name}"`` for a team, else ``f"{id:02}_{name}"`` (the kits' form), the
        name made safe (:func:`esrkit.names.safe_name`: ``[FEAN]`` -> ``FEAN``), so that a folder named after the
        key is always inside its parent."""
        number = self.team if self.team is not None else self.model_id
        name = safe_name(self.name)
        return name if number is None else f"{number:02}_{name}"

    @property
    def display_name(self) -> str:
        """How tables name it: team and name as given for a team (``07_NanoSR``, ``42_[FEAN]``), the entry's name
        otherwise."""
        return f"{self.team:02}_{self.name}" if self.team is not None else self.name

    @property
    def renamed(self) -> bool:
        """Whether the results key spells the name otherwise than given (it had to be made safe)."""
        return safe_name(self.name) != self.name

    @property
    def arch_name(self) -> str:
        return getattr(self.arch, "__name__", type(self.arch).__name__)

    def call_text(self) -> str:
        """How the network is built, as Python: ``FSANet(fea_ch=56, bias=False)``."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.arch_name}({', '.join(parts)})"

    def bound_arguments(self) -> dict[str, Any]:
        """The constructor's arguments by parameter name (``args`` and ``kwargs`` bound to the signature)."""
        try:
            signature = inspect.signature(self.arch)
        except (TypeError, ValueError):  # no signature to read: building will tell
            return {f"arg{i}": a for i, a in enumerate(self.args)} | dict(self.kwargs)
        try:
            return dict(signature.bind(*self.args, **self.kwargs).arguments)
        except TypeError as exc:
            raise KitError(f"{self.call_text()} does not match {self.arch_name}{signature} ({exc}): fix "
                           f"{options('init_args', 'init_kwargs', sep=' / ')}") from None

    def replace(self, **changes: Any) -> "Entry":
        return dataclasses.replace(self, **changes)

    # -- running the entry's own code ---------------------------------------------------------------

    @contextlib.contextmanager
    def running_on(self, device: torch.device) -> Iterator[None]:
        """Where the entry's code runs: its hard-coded CUDA calls redirected to ``device`` when that is not CUDA,
        and -- for a team's file -- its process exits refused (:func:`esrkit.teamcode.exits_refused`)."""
        with contextlib.ExitStack() as stack:
            if self.source is not None:
                stack.enter_context(exits_refused(f"{self.source.name}"))
            if self.redirect_cuda and device.type != "cuda":
                stack.enter_context(cuda_redirected(device))
            yield

    def _on_build_device(self) -> contextlib.AbstractContextManager[None]:
        """Building happens on the CPU; a constructor that asks for CUDA gets it only where there is one."""
        return self.running_on(torch.device("cuda" if torch.cuda.is_available() else "cpu"))

    # -- building and loading ------------------------------------------------------------------------

    def build(self) -> nn.Module:
        """A fresh, untrained model in eval mode, built on the CPU (a constructor that asks for CUDA gets it where
        there is one, else the CPU: see :meth:`running_on`)."""
        try:
            with self._on_build_device():
                model = self.arch(*self.args, **self.kwargs)
        except KitError:
            raise
        except Exception as exc:  # a team's constructor can raise anything: wrong arguments, mostly
            hint = cuda_only_hint(exc) or "check the class and its constructor arguments"
            raise KitError(f"{self.name}: building {self.call_text()} raised {first_line(exc)} ({hint})") from None
        if not isinstance(model, nn.Module):
            raise KitError(f"{self.name}: {self.call_text()} returned {type(model).__name__}, not an nn.Module")
        return model.eval()

    def default_weights_path(self, model_zoo: Path = MODEL_ZOO) -> Path | None:
        if self.weights is None:
            return None
        path = Path(self.weights)
        return path if path.is_absolute() or path.parent != Path(".") else model_zoo / path

    def has_default_weights(self, model_zoo: Path = MODEL_ZOO) -> bool:
        path = self.default_weights_path(model_zoo)
        return path is not None and path.is_file()

    def weights_path(self, weights: Path | None = None, model_zoo: Path = MODEL_ZOO, flag: str | None = None) -> Path:
        """``weights``, or the entry's default file; an error that says where it was expected when absent
        (``flag``: the option that gives this entry's weights on the command at hand; default ``--weights``, or the
        spec's ``weights`` for a team of a spec file)."""
        with named_as(self.option_style):
            flag = flag or option("weights")
        path = weights if weights is not None else self.default_weights_path(model_zoo)
        if path is None:
            if self.source is not None:  # a team's file: its weights are found by its name (teamfile.find_weights)
                expected = self.source.parent.parent / "model_zoo" / f"{self.source.stem}.pth"
                raise KitError(f"no weights found for {self.source.name}: expected {expected} (or the one "
                               f"model_zoo/teamNN_* file of its team); pass {flag} PATH")
            raise KitError(f"entry {self.name} has no default weights file: pass {flag} PATH")
        if not path.is_file():
            hint = f"check {flag}" if weights is not None else f"put the file there or pass {flag} PATH"
            raise KitError(f"weights for {self.name} not found: expected {path}; {hint}{self._official_copy_hint(flag)}")
        return path

    def _official_copy_hint(self, flag: str) -> str:
        """Where the shared folder holds this registered entry's official weights (the baselines'), if it does."""
        if self.source is not None:
            return ""
        found = sorted(shared_path("weights").glob(f"{self.name.lower()}_*.pth"))
        return f" (the official weights are in the shared folder: {flag} {found[0]})" if found else ""

    def load(self, weights: Path | None = None, model_zoo: Path = MODEL_ZOO, flag: str | None = None) -> "Loaded":
        """The model with its weights loaded and the post-load step applied (see the module docstring)."""
        path = self.weights_path(weights, model_zoo, flag)
        model = self.build()
        with self._on_build_device(), named_as(self.option_style):
            report = (load_by_method(model, path, self.load_method) if self.load_method is not None else
                      load_weights(model, path, state_key=self.state_key, strict=self.strict,
                                   checkpoint_filter=self.checkpoint_filter))
            self.apply_post_load(model)
        return Loaded(self, model.eval(), path, report)

    def apply_post_load(self, model: nn.Module) -> None:
        """Call ``post_load`` on the model (``NAME``) or on every submodule that has it (``each:NAME``)."""
        if not self.post_load:
            return
        each = self.post_load.startswith(EACH_PREFIX)
        method = self.post_load[len(EACH_PREFIX):] if each else self.post_load
        cls = type(model).__name__
        if each:
            targets = [m for m in list(model.modules()) if callable(getattr(m, method, None))]
            missing = f"no submodule of {cls} has a method {method!r}" if not targets else None
        else:
            targets = [model]
            missing = f"{cls} has no method {method!r}" if not callable(getattr(model, method, None)) else None
        if missing:
            similar = sorted({n for m in model.modules() for n in dir(m) if not n.startswith("_")
                              and any(w in n.lower() for w in ("deploy", "fuse", "rep", "switch", "merge"))})
            hint = f" (methods that look like one: {', '.join(similar[:6])})" if similar else ""
            raise KitError(f"{self.name}: {option('post_load', self.post_load)}: {missing}{hint}")
        try:
            for target in targets:
                getattr(target, method)()
        except Exception as exc:  # the team's re-parameterisation code
            raise KitError(f"{self.name}: the post-load step {self.post_load} raised {explain_failure(exc)}") from None


@dataclass(frozen=True)
class Loaded:
    """An entry's model with its weights: what was loaded, from where, and how."""

    entry: Entry
    model: nn.Module = field(repr=False)
    weights: Path
    report: LoadReport

    def describe(self) -> str:
        post = f"; post-load {self.entry.post_load}" if self.entry.post_load else ""
        return f"{self.entry.call_text()} with {self.weights} ({self.report.describe()}{post})"
