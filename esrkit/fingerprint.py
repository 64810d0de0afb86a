"""What a measurement was made from, as a digest of the data's contents (not only its path).

A results entry, a batch team's status and an SR folder record the digest of the splits they were
measured on, so that a re-run can tell "the same data" (skip it, or replace the entry silently, as
the official kit does) from "other data" (a blacked-out HR image, another benchmark set in the same
folder name) without trusting paths or modification times. Hashing reads every file once (about a
second for a 200-image DIV2K_LSDIR split); digests are cached per process by (path, size, mtime).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from esrkit.datasets import Split
from esrkit.errors import KitError

_CHUNK = 1 << 20
_CACHE: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """The BLAKE2b-128 digest of a file's bytes (hex), cached by (resolved path, size, mtime)."""
    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _CACHE:
            digest = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    digest.update(chunk)
            _CACHE[key] = digest.hexdigest()
    except OSError as exc:
        raise KitError(f"cannot read {path} ({exc.strerror or exc}): check the data folder") from None
    return _CACHE[key]


def split_fingerprint(split: Split) -> str:
    """The digest of one split: its name, and per pair (in order) the name and the HR and LR files' contents."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"split {split.name}\n".encode())
    for pair in split.pairs:
        hr = "-" if pair.hr_path is None else file_digest(pair.hr_path)
        lr = "made-by-imresize" if pair.lr_path is None else file_digest(pair.lr_path)
        digest.update(f"{pair.name} {hr} {lr}\n".encode())
    return digest.hexdigest()


def data_fingerprint(splits: Iterable[Split]) -> str:
    """The digest of several splits (e.g. valid and test of one run), order included."""
    digest = hashlib.blake2b(digest_size=16)
    for split in splits:
        digest.update(split_fingerprint(split).encode())
    return digest.hexdigest()
