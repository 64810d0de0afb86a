"""Names made safe as keys: the one place where a name becomes part of a results key (and so of a path).

A name comes from anywhere: a spec's ``name``, ``--name``, a team file's ``register(Entry(name=...))``, the
results key of an official ``select_model`` (2025's ``"42_[FEAN]"``). The kit keeps it as given for display
and makes the results key -- and every folder named after it, ``SAVE_DIR/<key>/<split>`` -- from
:func:`safe_name`: ASCII letters, digits and ``_ . + -`` only, no ``..``, no leading or trailing ``. _ -``,
not empty, at most :data:`MAX_NAME` characters; deterministic and readable (``[FEAN]`` -> ``FEAN``,
``Café`` -> ``Cafe``, ``../../victim`` -> ``victim``). A safe name is left as it is.

:func:`child_folder` joins a key to a folder and refuses, whatever the key, a result that is not one folder
directly inside it: a defence in depth where a path is built from a key.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

from esrkit.errors import KitError

MAX_NAME = 64
_OUTSIDE = re.compile(r"[^A-Za-z0-9_.+-]+")
_DOTS = re.compile(r"\.{2,}")
_UNDERSCORES = re.compile(r"_{2,}")
_EDGES = "._-"


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def safe_name(name: str) -> str:
    """``name`` as a results-key component and a folder name (see the module docstring)."""
    ascii_text = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    text = _OUTSIDE.sub("_", ascii_text)
    text = _UNDERSCORES.sub("_", _DOTS.sub(".", text)).strip(_EDGES)
    if not text:
        return f"name_{_digest(name)}"  # nothing readable is left: distinct names stay distinct
    if len(text) > MAX_NAME:
        text = f"{text[:MAX_NAME - 9].rstrip(_EDGES)}_{_digest(name)}"
    return text


def is_one_component(name: str) -> bool:
    """Whether ``name`` joined to a folder names a folder directly inside it (no separator, not ``.``/``..``)."""
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return bool(name) and name not in (".", "..") and "\0" not in name and not any(s in name for s in separators)


def child_folder(root: Path, name: str, flag: str) -> Path:
    """``root / name``, refused unless it is one folder directly inside ``root`` (``flag``: the option giving
    ``root``, for the message)."""
    path = Path(root) / name
    if not is_one_component(name) or Path(os.path.normpath(path)).parent != Path(os.path.normpath(root)):
        raise KitError(f"{flag} {root}: the folder for {name!r} would not be inside it; refused (a results key is "
                       f"made safe by esrkit.names.safe_name: please report this)")
    return path
