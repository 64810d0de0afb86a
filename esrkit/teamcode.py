"""Running a team's code (importing its file, building, loading, re-parameterising, the forward): a
``sys.exit`` / ``exit()`` / ``os._exit`` in it is a failure of that team, never the end of the kit's process.

Uncaught, ``sys.exit(0)`` at import made ``test_demo.py --model_file`` end with exit 0 and no output
(which reads as success), and stopped an in-process batch after that team with no table written;
``os._exit`` cannot even be caught. While :func:`exits_refused` is active, ``os._exit`` raises
``SystemExit`` like ``sys.exit`` does, and a ``SystemExit`` leaving the block becomes a
:class:`TeamExit` -- a :class:`~esrkit.errors.KitError`, so every command reports it as one line and a
batch goes on with the next team.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, NoReturn

from esrkit.errors import KitError


class TeamExit(KitError):
    """A team's code tried to end the process."""


def _refused_exit(code: int) -> NoReturn:
    raise SystemExit(code)


@contextlib.contextmanager
def exits_refused(who: str) -> Iterator[None]:
    """Run a block of ``who``'s code (a file name, an entry) with its process exits turned into :class:`TeamExit`."""
    original = os._exit
    os._exit = _refused_exit  # type: ignore[assignment]
    try:
        yield
    except SystemExit as exc:
        raise TeamExit(f"{who} tried to end the process (sys.exit / exit() / os._exit with code {exc.code!r}): a "
                       f"submission's code must return a model and never exit -- ask the team to remove that call"
                       ) from None
    finally:
        os._exit = original  # type: ignore[assignment]
