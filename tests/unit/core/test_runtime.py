"""Seeds, device and dtype choice, autocast."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pytest
import torch

from herd.core.runtime import autocast, pick_device, pick_dtype, seed_everything


def draw(gen: torch.Generator) -> tuple:
    return random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item()


def test_seed_everything_repeats_every_source() -> None:
    a = draw(seed_everything(7))
    b = draw(seed_everything(7))
    c = draw(seed_everything(8))
    assert a == b
    assert all(x != y for x, y in zip(a, c))
    seed_everything(2**40)  # larger than numpy's 32-bit seed range


def test_pick_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected
    assert pick_device("auto").type == expected
    assert pick_device("CPU") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")
    with pytest.raises(ValueError, match="unknown device 'meta'"):
        pick_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_pick_device_cuda_without_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda:1")


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("fp32", torch.float32),
        ("float32", torch.float32),
        ("bf16", torch.bfloat16),
        ("bfloat16", torch.bfloat16),
        ("fp16", torch.float16),
        ("float16", torch.float16),
    ],
)
def test_pick_dtype_names(name: str, dtype: torch.dtype) -> None:
    assert pick_dtype(name, torch.device("cpu")) == dtype


def test_pick_dtype_auto_and_unknown() -> None:
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    if torch.cuda.is_available():
        want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        assert pick_dtype("auto", torch.device("cuda")) == want
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        pick_dtype("int8", "cpu")


def test_autocast() -> None:
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, torch.float32), contextlib.nullcontext)
    x = torch.randn(4, 4)
    with autocast(cpu, torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
    with autocast(cpu, torch.float32):
        assert (x @ x).dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_dtype_autocast() -> None:
    dev = pick_device("cuda:0")
    assert dev == torch.device("cuda:0")
    with pytest.raises(ValueError, match="CUDA device"):
        pick_device(f"cuda:{torch.cuda.device_count()}")
    dtype = pick_dtype("auto", dev)
    x = torch.randn(4, 4, device=dev)
    with autocast(dev, torch.float16):
        assert (x @ x).dtype == torch.float16
    assert dtype in (torch.bfloat16, torch.float32)
