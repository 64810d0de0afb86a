"""How a message names the setting that fixes it: the command-line flag, or the key of the submission spec.

A team is described either by flags (``--state_key params``) or by a ``[[team]]`` table of a spec file
(``state_key = "params"``). ``batch`` takes only the spec, so its hints must not name flags it does not
have; the same message raised while a spec team is resolved or loaded names the spec's key. A team of a
``batch --models_dir`` (a folder, no spec: every fact inferred) has neither: its messages name the spec's
key and say, once, how to write a spec (:data:`FOLDER_HINT`). The style is a context variable, set by
:func:`esrkit.spec.resolve` and :meth:`esrkit.entry.Entry.load` from where the team came from, and read
by every message that names a setting (:func:`option`).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Literal

from esrkit.errors import KitError

Style = Literal["flags", "spec", "folder"]
_STYLE: ContextVar[Style] = ContextVar("esrkit_option_style", default="flags")

BATCH_FLAGS = ("data_range",)  # the team settings batch itself takes as flags (the default of every team)
IN_A_SPEC = "(in a spec)"
FOLDER_HINT = ("a --models_dir batch takes no per-team settings: write the teams' [[team]] tables in a spec file "
               "(`python -m esrkit.submission spec --from_select_model KIT/test_demo.py --out teams.toml` writes one "
               "from the official kit's test_demo.py) and run `batch --spec teams.toml`")

# key -> (as a flag, as spec text) where the two differ in more than the dashes
_SPELLING = {
    "non_strict": ("--non_strict", "strict = false"),
    "team_name": ("--name", "name"),
}


def option(key: str, value: str | None = None) -> str:
    """``--state_key`` / ``--state_key params`` on the command line; ``state_key`` / ``state_key = "params"`` in the
    spec (a team table of the file given with --spec)."""
    flag, spec_text = _SPELLING.get(key, (f"--{key}", key))
    if _STYLE.get() == "flags" or (_STYLE.get() == "folder" and key in BATCH_FLAGS):
        return flag if value is None else f"{flag} {value}"
    return in_spec(spec_text if value is None else f'{spec_text} = "{value}"')


def options(*keys: str, sep: str = ", ") -> str:
    """Several settings at once: ``--init_args / --init_kwargs``, or ``init_args / init_kwargs (in the spec)``."""
    if _STYLE.get() == "flags":
        return sep.join(option(k) for k in keys)
    return in_spec(sep.join(_SPELLING.get(k, (None, k))[1] for k in keys))


def in_spec(text: str) -> str:
    """Spec text, said to be the spec's: ``text (in the spec)``, or ``text (in a spec)`` for a folder's team."""
    return f"{text} {IN_A_SPEC if _STYLE.get() == 'folder' else '(in the spec)'}"


def style() -> Style:
    return _STYLE.get()


@contextlib.contextmanager
def named_as(style: Style) -> Iterator[None]:
    """Within the block, :func:`option` names settings as ``style`` says; for a folder's team, an error that names a
    spec key gains :data:`FOLDER_HINT` (once) on its way out."""
    token = _STYLE.set(style)
    try:
        yield
    except KitError as exc:
        message = str(exc)
        if style != "folder" or IN_A_SPEC not in message or FOLDER_HINT in message:
            raise
        raise type(exc)(f"{message}; {FOLDER_HINT}") from None
    finally:
        _STYLE.reset(token)
