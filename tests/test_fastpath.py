"""The opt-in fast path: CPU fallbacks with one-line messages, numerics against the fp32 eager model."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from esrkit import metrics
from esrkit.datasets import open_split
from esrkit.device import prepare_model
from esrkit.imageio import tensor_to_uint8, uint8_to_tensor
from esrkit.errors import KitError
from esrkit.fastpath import FAST, FastForward, FastOptions, _cudnn_benchmark, options_from_flags
from esrkit.registry import get_entry

CPU = torch.device("cpu")
CUDA_ONLY = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def mlrn() -> torch.nn.Module:
    """MLRN-entire with a seeded init (not trained): the numerics, not the quality, are under test."""
    torch.manual_seed(0)
    return prepare_model(get_entry("MLRN-entire").build(), CPU)


@pytest.fixture(scope="module")
def lr_input() -> torch.Tensor:
    return torch.rand(1, 3, 20, 28, generator=torch.Generator().manual_seed(1)) * 255.0


def test_fast_on_cpu_falls_back_with_one_line_each_and_runs(mlrn, lr_input, capsys) -> None:
    fast = FastForward(mlrn, CPU, FAST)
    err = capsys.readouterr().err.splitlines()
    assert "fast path: fp16 needs CUDA: running fp32 on cpu" in err
    assert "fast path: cuda graphs need CUDA: running eager on cpu" in err
    assert "fast path: cudnn autotuning needs CUDA: off on cpu" in err
    assert fast.options.precision == "fp32" and fast.options.engine == "eager" and fast.options.channels_last
    assert fast.describe() == "fp32, eager, channels_last [cpu fallback: fp16->fp32, graphs->eager, no cudnn autotune]"
    out = fast(lr_input)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 80, 112)
    torch.testing.assert_close(out, mlrn(lr_input), rtol=1e-5, atol=1e-3)


def test_fp32_eager_graphs_request_equals_the_model_exactly(mlrn, lr_input) -> None:
    notes: list[str] = []
    fast = FastForward(mlrn, CPU, FastOptions(engine="graphs"), log=notes.append)
    assert notes == ["cuda graphs need CUDA: running eager on cpu"]
    assert torch.equal(fast(lr_input), mlrn(lr_input))
    assert fast.prepare(lr_input) == 0.0  # plain eager: nothing to prepare


def test_channels_last_equals_contiguous_within_float_tolerance(mlrn, lr_input) -> None:
    cl = FastForward(mlrn, CPU, FastOptions(channels_last=True))
    out = cl(lr_input)
    assert cl.model.conv_1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, mlrn(lr_input), rtol=1e-5, atol=1e-3)
    assert next(mlrn.parameters()).is_contiguous()  # the challenge model itself is untouched


def test_bf16_on_cpu_within_psnr_tolerance(benchmarks_dir: Path, official_weights_dir: Path) -> None:
    entry = get_entry("RFDN")
    model = prepare_model(entry.load(official_weights_dir / "rfdn_ntire2023_team00.pth").model, CPU)
    hr, lr = open_split(benchmarks_dir / "Set5").pairs[1].load(4)
    x = uint8_to_tensor(lr, entry.data_range)
    bf16 = FastForward(model, CPU, FastOptions(precision="bf16", channels_last=True))
    assert bf16.describe().startswith("bf16, eager, channels_last")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.float32
    out = bf16(x)
    assert out.dtype == torch.float32
    ref = metrics.psnr(tensor_to_uint8(model(x), entry.data_range), hr)
    got = metrics.psnr(tensor_to_uint8(out, entry.data_range), hr)
    # bf16 keeps 8 mantissa bits: close, but not the 0.01 dB that fp16 keeps (measured 0.009 dB here).
    assert abs(got - ref) < 0.05


def test_compile_engine_runs_and_prepares_once(mlrn, lr_input) -> None:
    fast = FastForward(mlrn, CPU, FastOptions(engine="compile", compile_backend="eager"))
    assert fast.describe() == "fp32, torch.compile backend=eager"
    assert fast.prepare(lr_input) > 0.0 and fast.prepare(lr_input) == 0.0
    torch.testing.assert_close(fast(lr_input), mlrn(lr_input), rtol=1e-5, atol=1e-4)


def test_options_from_flags() -> None:
    assert options_from_flags(False, None, None) is None
    assert options_from_flags(True, None, None) == FAST
    assert options_from_flags(True, "bf16", None) == dataclasses.replace(FAST, precision="bf16")
    alone = options_from_flags(False, None, "compile")
    assert alone is not None and (alone.precision, alone.engine, alone.channels_last) == ("fp32", "compile", True)
    with pytest.raises(KitError, match="unknown precision 'fp8'"):
        FastOptions(precision="fp8")
    with pytest.raises(KitError, match="unknown engine"):
        FastOptions(engine="tensorrt")


def test_cudnn_benchmark_is_switched_only_inside() -> None:
    before = torch.backends.cudnn.benchmark
    with _cudnn_benchmark(not before):
        assert torch.backends.cudnn.benchmark is (not before)
    assert torch.backends.cudnn.benchmark is before


@CUDA_ONLY
def test_cuda_graphs_fp32_match_eager_and_lru(mlrn, lr_input) -> None:
    device = torch.device("cuda")
    model = copy.deepcopy(mlrn).to(device)
    x = lr_input.to(device)
    small = x[..., :16, :16]
    fast = FastForward(model, device, FastOptions(engine="graphs", max_graphs=1), copy_out=False)
    assert fast.prepare(x) > 0.0 and fast.prepare(x) == 0.0 and fast.captures == 1
    torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(fast(small), model(small), rtol=1e-4, atol=1e-2)
    assert fast.captures == 2 and len(fast._graphs) == 1  # an LRU of one: the first shape was dropped
    a = fast(x)
    b = fast(x * 0.5)
    assert fast.captures == 3 and a.data_ptr() == b.data_ptr()  # copy_out=False: the static buffer itself
    assert torch.backends.cudnn.benchmark is False  # autotuning was on only inside the calls


@CUDA_ONLY
def test_fast_fp16_graphs_psnr_close_to_fp32(benchmarks_dir: Path, official_weights_dir: Path) -> None:
    device = torch.device("cuda")
    entry = get_entry("RFDN")
    model = prepare_model(entry.load(official_weights_dir / "rfdn_ntire2023_team00.pth").model, device)
    hr, lr = open_split(benchmarks_dir / "Set5").pairs[1].load(4)
    x = uint8_to_tensor(lr, entry.data_range).to(device)
    fast = FastForward(model, device, FAST)
    assert fast.describe() == "fp16, CUDA graphs, channels_last, cudnn autotune"
    ref = metrics.psnr(tensor_to_uint8(model(x), entry.data_range), hr)
    got = metrics.psnr(tensor_to_uint8(fast(x), entry.data_range), hr)
    assert abs(got - ref) < 0.01


def test_compile_mode_alone_asks_for_a_compiled_fast_pass() -> None:
    assert options_from_flags(False, None, None) is None
    alone = options_from_flags(False, None, None, "max-autotune-no-cudagraphs")
    assert alone is not None and alone.engine == "compile" and alone.compile_mode == "max-autotune-no-cudagraphs"
    with_fast = options_from_flags(True, None, None, "reduce-overhead")
    assert with_fast.engine == "compile+graphs" and with_fast.compile_mode == "reduce-overhead"  # --fast's graphs, compiled
