"""The device an entry runs on: choosing it, naming it, synchronising it, reading its memory peak.

Also :func:`cuda_redirected`, which lets a team's file that hard-codes CUDA (``.cuda()``,
``device="cuda"``, ``torch.device("cuda")``) run on a machine without it, without editing the file.
"""

from __future__ import annotations

import contextlib
import gc
import platform
import re
from typing import Any, Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode

from esrkit.errors import KitError, first_line

MIB = 1024**2
# What torch says when code wants a GPU this machine lacks: "Jiterator is only supported on CUDA and ROCm GPUs",
# "Torch not compiled with CUDA enabled", "Found no NVIDIA driver", "No CUDA GPUs are available", ...
_WANTS_A_GPU = re.compile(r"\bCUDA\b|\bROCm\b|NVIDIA driver|\bGPUs?\b")


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; anything else is checked to exist here.

    A CUDA device becomes the process's current one, so that events, streams and synchronisation of every
    measurement are on the device the run uses (``cuda:1`` included).
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if mps_available() else torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise KitError(f"unknown device {requested!r}: use auto, cuda, cuda:N, mps or cpu") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise KitError(f"--device {requested} was asked for but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise KitError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(device)
    elif device.type == "mps" and not mps_available():
        raise KitError(f"--device {requested} was asked for but MPS is not available here; use --device cpu or auto")
    elif device.type != "cpu":
        raise KitError(f"unsupported device {requested!r}: use auto, cuda, cuda:N, mps or cpu")
    return device


def cuda_only_hint(exc: BaseException) -> str | None:
    """The fix for an exception that says the code needs CUDA, on a machine without it (None otherwise: on a GPU
    machine a CUDA error is something else -- memory, a kernel fault)."""
    if torch.cuda.is_available() or not _WANTS_A_GPU.search(str(exc)):
        return None
    return ("a CUDA-only operation, which needs a GPU machine: this one has no CUDA GPU (torch.cuda.is_available() "
            "is False); run this entry on a machine with one")


def explain_failure(exc: BaseException) -> str:
    """User code's exception as one line (:func:`~esrkit.errors.first_line`), with :func:`cuda_only_hint`'s fix
    when it applies."""
    hint = cuda_only_hint(exc)
    return first_line(exc) + (f" ({hint})" if hint else "")


def device_name(device: torch.device) -> str:
    """The GPU's model name, or a description of the CPU / MPS device and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    """Wait for every kernel queued on ``device`` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` in MiB (the challenge's memory figure); None off CUDA."""
    return torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None


def available_memory_bytes() -> int | None:
    """The host's available memory (``MemAvailable`` of /proc/meminfo, Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_device(device: torch.device) -> None:
    """Drop what a previous model left: garbage, and the CUDA caching allocator's free blocks."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block, then back (nothing when None). oneDNN's convolutions round
    differently with another thread count (~1e-5 dB), so runs compared to the last digit share one."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """As the official kits do: eval mode, no parameter requires grad, moved to the device."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device)


# --- running code that hard-codes CUDA on another device ---------------------------------------


def _is_cuda(value: Any) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    if isinstance(value, str):
        return value == "cuda" or value.startswith("cuda:")
    return isinstance(value, int) and not isinstance(value, bool)  # .to(0) / device=0 mean cuda:0


class _CudaRedirect(TorchFunctionMode):
    """Maps every CUDA placement (``Tensor.cuda()``, ``.to("cuda")``, ``device="cuda"``) to ``target``."""

    def __init__(self, target: torch.device) -> None:
        super().__init__()
        self.target = target

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0].to(self.target)
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs["device"] = self.target
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], self.target, *args[2:])
        return func(*args, **kwargs)


@contextlib.contextmanager
def cuda_redirected(target: torch.device) -> Iterator[None]:
    """While active, code that asks for CUDA gets ``target`` instead.

    Covers ``Tensor.cuda()``, ``.to("cuda"|torch.device("cuda")|0)`` and ``device="cuda"`` in factory
    functions (a torch function mode: on this thread) and ``Module.cuda()`` (patched process-wide for the
    block). ``torch.cuda.*`` calls themselves (events, synchronize) are not redirected. Every torch call
    made meanwhile goes through the mode, so CPU timings taken under it carry a small Python overhead.
    """
    original_module_cuda = torch.nn.Module.cuda

    def module_cuda(self: torch.nn.Module, device: Any = None) -> torch.nn.Module:
        return self.to(target)

    torch.nn.Module.cuda = module_cuda  # type: ignore[method-assign]
    try:
        with _CudaRedirect(target):
            yield
    finally:
        torch.nn.Module.cuda = original_module_cuda  # type: ignore[method-assign]
