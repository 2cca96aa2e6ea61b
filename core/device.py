"""Device choice, CPU core counts and bf16 autocast: what training, the app and the benchmarks ask of the hardware.

`pick_device("auto")` takes CUDA, then Apple's MPS, then the CPU; `available_cores()` counts the cores this process
may run on (its CPU affinity, not the machine's total), which the trainer, the app's session limits and the
benchmarks use as their thread count. bf16 autocast is used where the hardware runs it natively (CUDA, CPUs with
AVX512-BF16 or AMX); elsewhere it is emulated and slower than float32.
"""

from __future__ import annotations

import os

import torch

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")


def pick_device(name: str = "auto") -> torch.device:
    """ "auto": cuda, then mps, then cpu (with one thread per available core). Or an explicit device name."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA GPU is available")
    return device


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix maths runs natively here: CUDA, or a CPU whose oneDNN has bf16 kernels (AVX512-BF16,
    AMX). Elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether training autocasts to bf16: "bf16" always (CPU or CUDA), "auto" where it is native."""
    if precision == "fp32" or device.type not in ("cpu", "cuda"):
        return False
    return precision == "bf16" or native_bf16(device)
