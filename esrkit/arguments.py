"""Checks of what a caller passes to the kit's library functions (:mod:`esrkit.api`, the registry, the spec
reader): a wrong type or value is one :class:`~esrkit.errors.KitError` line naming the function, the argument,
what it must be and what was given -- not an AttributeError deep inside, nor a silently wrong number."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from esrkit.errors import KitError

DATA_RANGE = "a positive number: 1.0 or 255 (what white is at the model's input and output)"


def shown(value: object, limit: int = 60) -> str:
    """A value as a message shows it: its repr when short and on one line, else its type."""
    text = repr(value)
    return text if len(text) <= limit and "\n" not in text else f"a {type(value).__qualname__}"


def wrong(function: str, argument: str, must: str, value: object) -> KitError:
    """``esrkit.FUNCTION: ARGUMENT must be MUST, got VALUE``."""
    return KitError(f"esrkit.{function}: {argument} must be {must}, got {shown(value)}")


MODULE = "a torch.nn.Module (the network object, e.g. esrkit.get_entry('RFDN').load().model)"
PATH = "a str or pathlib.Path"


def module(function: str, value: Any, must: str = MODULE) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise wrong(function, "model", must, value)
    return value


def flag(function: str, argument: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise wrong(function, argument, "True or False", value)
    return value


def is_integer(value: Any) -> bool:
    """An int, not a bool (True is an int to Python, never a count or a size to the kit)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(function: str, argument: str, value: Any) -> int:
    if not is_integer(value) or value < 1:
        raise wrong(function, argument, "a positive integer", value)
    return int(value)


def data_range(function: str, value: Any) -> float:
    """What white is: a finite positive number (a string, a bool, 0, a negative or NaN is no range)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not (math.isfinite(value) and value > 0):
        raise wrong(function, "data_range", DATA_RANGE, value)
    return float(value)


def text(function: str, argument: str, value: Any) -> str:
    if not isinstance(value, str):
        raise wrong(function, argument, "a string", value)
    return value


def path(function: str, argument: str, value: Any, must: str = f"a path ({PATH})") -> Path:
    if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
        raise wrong(function, argument, must, value)
    return Path(value).expanduser()


def optional_path(function: str, argument: str, value: Any, must: str = f"a path ({PATH})") -> Path | None:
    return None if value is None else path(function, argument, value, must)


def device(function: str, value: Any) -> str:
    """A device as :func:`esrkit.device.pick_device` takes it (a string: ``auto``, ``cpu``, ``cuda:1``, ...)."""
    if isinstance(value, torch.device):
        return str(value)
    if not isinstance(value, str):
        raise wrong(function, "device", "'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device", value)
    return value
