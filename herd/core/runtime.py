"""Seeds, device and dtype choice, and autocast that is a no-op at full precision."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "f32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all CUDA devices too); return a CPU generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy only takes 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device, lazily if CUDA is not initialised yet
    return torch.Generator().manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (cuda if available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""
    key = name.strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(key)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        _check_cuda(name, device)
    return device


def _check_cuda(name: str, device: torch.device) -> None:
    # Fail here in one line rather than at the first tensor move, deep inside model code.
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")


def pick_dtype(name: str, device: torch.device | str = "cpu") -> torch.dtype:
    """'auto' (bf16 on CUDA that supports it, else fp32), or fp32/float32, bf16/bfloat16, fp16/float16."""
    key = name.strip().lower()
    if key == "auto":
        on_cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
        return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}: expected auto, fp32, bf16 or fp16")
    return _DTYPES[key]


def autocast(device: torch.device | str, dtype: torch.dtype) -> Any:
    """torch.autocast for 16-bit dtypes; a null context for fp32, so callers need no branch."""
    if dtype in _LOW_PRECISION:
        return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
    return contextlib.nullcontext()
