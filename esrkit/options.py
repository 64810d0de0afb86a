"""How a message names the setting that fixes it: the command-line flag, or the key of the submission spec.

A team is described either by flags (``--state_key params``) or by a ``[[team]]`` table of a spec file
(``state_key = "params"``). ``batch`` takes only the spec, so its hints must not name flags it does not
have; the same message raised while a spec team is resolved or loaded names the spec's key. The
style is a context variable, set by :func:`esrkit.spec.resolve` and :meth:`esrkit.entry.Entry.load`
from where the team came from, and read by every message that names a setting (:func:`option`).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Literal

Style = Literal["flags", "spec"]
_STYLE: ContextVar[Style] = ContextVar("esrkit_option_style", default="flags")

# key -> (as a flag, as spec text) where the two differ in more than the dashes
_SPELLING = {
    "non_strict": ("--non_strict", "strict = false"),
    "team_name": ("--name", "name"),
}


def option(key: str, value: str | None = None) -> str:
    """``--state_key`` / ``--state_key params`` on the command line; ``state_key`` / ``state_key = "params"`` in the
    spec (a team table of the file given with --spec)."""
    flag, spec_text = _SPELLING.get(key, (f"--{key}", key))
    if _STYLE.get() == "flags":
        return flag if value is None else f"{flag} {value}"
    text = spec_text if value is None else f'{spec_text} = "{value}"'
    return f"{text} (in the spec)"


def options(*keys: str, sep: str = ", ") -> str:
    """Several settings at once: ``--init_args / --init_kwargs``, or ``init_args / init_kwargs (in the spec)``."""
    if _STYLE.get() == "flags":
        return sep.join(option(k) for k in keys)
    return sep.join(_SPELLING.get(k, (None, k))[1] for k in keys) + " (in the spec)"


def style() -> Style:
    return _STYLE.get()


@contextlib.contextmanager
def named_as(style: Style) -> Iterator[None]:
    """Within the block, :func:`option` names settings as ``style`` says."""
    token = _STYLE.set(style)
    try:
        yield
    finally:
        _STYLE.reset(token)
