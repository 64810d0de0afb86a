"""An opt-in inference fast path, reported beside the challenge runtime, never instead of it.

The challenge protocol (``evaluation.py``) answers "what runtime would the challenge publish?".
:class:`FastForward` answers "how fast can this entry really run?": it wraps a private copy of a
prepared model (the challenge model is never touched) and runs it with any of

- ``precision`` fp32 / fp16 / bf16: model and input cast to that dtype, the output cast back to fp32
  before quantisation (fp16 is within 0.01 dB of fp32 for every registered entry on the checks made
  so far; bf16's 8-bit mantissa is not, for the 1.0-range entries: ``benchmarks/speed.py`` measures it);
- ``channels_last`` memory format for weights and input;
- ``cudnn_benchmark``: cuDNN autotuning, per input shape (cuDNN keys its cache by shape), switched on
  only around this wrapper's own calls, so the challenge pass keeps ``cudnn.benchmark = False``;
- ``engine``: ``eager``; ``graphs`` (one CUDA graph per input shape, with static input/output buffers,
  warmed up on a side stream before capture, an LRU of ``max_graphs`` captured shapes); ``compile``
  (``torch.compile``, mode configurable); ``compile+graphs`` (the compiled model captured per shape).

On a device where an option cannot run it says so in one line (``cuda graphs need CUDA: running eager
on cpu``) and runs without it; :meth:`FastForward.describe` names what really ran.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from torch import nn

from esrkit.errors import KitError

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ENGINES = ("eager", "graphs", "compile", "compile+graphs")
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"fast path: {msg}", file=sys.stderr)


@dataclass(frozen=True)
class FastOptions:
    """What the fast path may use; :class:`FastForward` drops what the device cannot run."""

    precision: str = "fp32"
    channels_last: bool = False
    cudnn_benchmark: bool = False
    engine: str = "eager"
    compile_mode: str = "default"  # torch.compile mode (inductor only), e.g. "max-autotune-no-cudagraphs"
    compile_backend: str = "inductor"
    max_graphs: int = 8  # captured shapes kept (least recently used dropped)
    warmup: int = 3  # calls on a side stream before a capture

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise KitError(f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if self.engine not in ENGINES:
            raise KitError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINES)}")
        if self.max_graphs < 1:
            raise KitError(f"max_graphs must be >= 1, got {self.max_graphs}")

    @property
    def graphs(self) -> bool:
        return self.engine in ("graphs", "compile+graphs")

    @property
    def compiled(self) -> bool:
        return self.engine in ("compile", "compile+graphs")


# --fast: everything that keeps fp32's PSNR within 0.01 dB on a GPU.
FAST = FastOptions(precision="fp16", channels_last=True, cudnn_benchmark=True, engine="graphs")


def options_from_flags(fast: bool, precision: str | None, engine: str | None,
                       compile_mode: str | None = None) -> FastOptions | None:
    """The fast-path options the command-line flags ask for; None when they ask for no fast pass.

    ``--fast`` is :data:`FAST`; ``--precision`` / ``--engine`` / ``--compile_mode`` override its fields (or,
    alone, start from fp32 eager with channels_last and cuDNN autotuning, which never change the PSNR
    beyond float rounding). A ``--compile_mode`` without ``--engine`` compiles the engine it would use
    (eager -> compile, graphs -> compile+graphs).
    """
    if not fast and precision is None and engine is None and compile_mode is None:
        return None
    base = FAST if fast else FastOptions(channels_last=True, cudnn_benchmark=True)
    if compile_mode is not None and engine is None and not base.compiled:
        engine = "compile+graphs" if base.graphs else "compile"
    return replace(base, precision=precision or base.precision, engine=engine or base.engine,
                   compile_mode=compile_mode or base.compile_mode)


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton
    except ImportError:
        return False
    return bool(has_triton())


def _effective(options: FastOptions, device: torch.device) -> tuple[FastOptions, list[str]]:
    """``options`` minus what ``device`` cannot run, and one message per dropped option."""
    notes: list[str] = []
    where = device.type
    if device.type != "cuda":
        if options.precision == "fp16" and device.type == "cpu":
            notes.append(f"fp16 needs CUDA: running fp32 on {where}")
            options = replace(options, precision="fp32")
        if options.graphs:
            fallback = "compile" if options.compiled else "eager"
            notes.append(f"cuda graphs need CUDA: running {fallback} on {where}")
            options = replace(options, engine=fallback)
        if options.cudnn_benchmark:
            notes.append(f"cudnn autotuning needs CUDA: off on {where}")
            options = replace(options, cudnn_benchmark=False)
    else:
        if options.precision == "bf16" and not torch.cuda.is_bf16_supported():
            notes.append(f"bf16 is not supported by {torch.cuda.get_device_name(device)}: running fp32")
            options = replace(options, precision="fp32")
        if options.compiled and options.compile_backend == "inductor" and not _has_triton():
            fallback = "graphs" if options.graphs else "eager"
            notes.append(f"torch.compile needs Triton on CUDA, which is not installed: running {fallback}")
            options = replace(options, engine=fallback)
    return options, notes


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """``torch.backends.cudnn.benchmark = enabled`` for the block only."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_in: torch.Tensor
    static_out: torch.Tensor


ShapeKey = tuple[tuple[int, ...], torch.dtype]


class FastForward:
    """A model run with the fast-path options; call it like the model (fp32 in, fp32 out).

    ``copy_out=False`` returns the CUDA graph's static output buffer itself (no copy): it is then only
    valid until the next call with the same input shape. Shapes not seen before are captured or
    compiled on first use; :meth:`prepare` does that ahead, outside a timed region.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        options: FastOptions = FastOptions(),
        *,
        copy_out: bool = True,
        log: Log = _stderr,
    ) -> None:
        self.device = device
        self.requested = options
        self.options, self.fallbacks = _effective(options, device)
        for note in self.fallbacks:
            log(note)
        self.copy_out = copy_out
        self.dtype = PRECISIONS[self.options.precision]
        # Without channels_last the input keeps its own layout, as in the challenge pass (whose LR tensors,
        # made by uint8_to_tensor from HxWxC arrays, already have channels_last strides).
        self.memory_format = torch.channels_last if self.options.channels_last else torch.preserve_format
        net = copy.deepcopy(model).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        net = net.to(device=device, dtype=self.dtype)
        if self.options.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.model = net
        self._fn: Callable[[torch.Tensor], torch.Tensor] = net
        if self.options.compiled:
            kwargs = {"mode": self.options.compile_mode} if self.options.compile_backend == "inductor" else {}
            self._fn = torch.compile(net, backend=self.options.compile_backend, **kwargs)
        self._graphs: OrderedDict[ShapeKey, _Captured] = OrderedDict()
        self._prepared: set[ShapeKey] = set()
        self.captures = 0  # CUDA graphs captured so far (evicted ones included)
        self.setup_ms = 0.0  # wall time spent in prepare(): captures, compiles, autotuning

    def describe(self) -> str:
        """Precision and engine for reports, e.g. ``fp16, CUDA graphs, channels_last, cudnn autotune``."""
        o = self.options
        engine = {"eager": "eager", "graphs": "CUDA graphs"}.get(o.engine)
        if engine is None:
            mode = f" {o.compile_mode}" if o.compile_backend == "inductor" else f" backend={o.compile_backend}"
            engine = f"torch.compile{mode}" + (" + CUDA graphs" if o.graphs else "")
        parts = [o.precision, engine] + ["channels_last"] * o.channels_last + ["cudnn autotune"] * o.cudnn_benchmark
        text = ", ".join(parts)
        r = self.requested
        dropped = [f"{r.precision}->{o.precision}"] * (r.precision != o.precision)
        dropped += [f"{r.engine}->{o.engine}"] * (r.engine != o.engine)
        dropped += ["no cudnn autotune"] * (r.cudnn_benchmark != o.cudnn_benchmark)
        if dropped:
            text += f" [{self.device.type} fallback: {', '.join(dropped)}]"
        return text

    def _key(self, x: torch.Tensor) -> ShapeKey:
        return tuple(x.shape), x.dtype

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """The model on an input already cast; output back in fp32."""
        return self._fn(x).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), _cudnn_benchmark(self.options.cudnn_benchmark):
            if not self.options.graphs:
                return self._body(x.to(dtype=self.dtype, memory_format=self.memory_format))
            captured = self._graph_for(x)
            captured.static_in.copy_(x)
            captured.graph.replay()
            return captured.static_out.clone() if self.copy_out else captured.static_out

    def prepare(self, x: torch.Tensor) -> float:
        """Capture / compile / autotune for ``x``'s shape now; returns the milliseconds it took (0 if done before)."""
        key = self._key(x)
        if key in self._graphs or key in self._prepared:
            return 0.0
        if not (self.options.graphs or self.options.compiled or self.options.cudnn_benchmark):
            return 0.0  # plain eager: nothing to do ahead
        t0 = time.perf_counter()
        if self.options.graphs:
            with torch.no_grad(), _cudnn_benchmark(self.options.cudnn_benchmark):
                self._graph_for(x)
        else:
            self(x)  # compiles (compile), autotunes the convolutions (cudnn_benchmark)
            self._prepared.add(key)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        ms = (time.perf_counter() - t0) * 1e3
        self.setup_ms += ms
        return ms

    def _graph_for(self, x: torch.Tensor) -> _Captured:
        key = self._key(x)
        captured = self._graphs.get(key)
        if captured is not None:
            self._graphs.move_to_end(key)
            return captured
        captured = self._capture(x)
        self._graphs[key] = captured
        self.captures += 1
        while len(self._graphs) > self.options.max_graphs:
            self._graphs.popitem(last=False)  # frees that graph's memory pool
        return captured

    def _capture(self, x: torch.Tensor) -> _Captured:
        """Warm up on a side stream (autotuning, compiling, lazy init), then capture one forward."""
        static_in = torch.empty_like(x, dtype=self.dtype, device=self.device, memory_format=self.memory_format)
        static_in.copy_(x)
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for _ in range(max(self.options.warmup, 1)):
                self._body(static_in)
        main.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: threads that do not capture (decoders, writers) may still make CUDA calls.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self._body(static_in)
        return _Captured(graph, static_in, static_out)
