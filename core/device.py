"""Device choice, CPU core counts and bf16 autocast: what training, the app and the benchmarks ask of the hardware.

`pick_device("auto")` takes CUDA, then Apple's MPS, then the CPU (or the device $DDPM_EXPLORER_DEVICE names: the
app on ZeroGPU keeps its state on the CPU, explorer/zero_gpu.py); `describe_device` says which in one line for the
page and the CLI ("cuda: NVIDIA H200", "cpu (2 cores)"); `available_cores()` counts the cores this process may run
on (its CPU affinity, not the machine's total), which the trainer, the app's session limits and the benchmarks use
as their thread count. bf16 autocast is used where the hardware runs it natively (CUDA, CPUs with AVX512-BF16 or
AMX); elsewhere it is emulated and slower than float32. Whether bf16, channels_last and torch.compile are used on
a given GPU is decided from measurements (core/accelerators.py).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
DEVICE_ENV = "DDPM_EXPLORER_DEVICE"  # what "auto" means when set: cpu, cuda, cuda:1, mps


def pick_device(name: str = "auto") -> torch.device:
    """ "auto": $DDPM_EXPLORER_DEVICE if set, else cuda, then mps, then cpu (with one thread per available core).
    Or an explicit device name."""
    if name == "auto":
        name = os.environ.get(DEVICE_ENV, "").strip() or "auto"
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


def describe_device(device: torch.device) -> str:
    """One line naming the device for the page and the CLI: "cuda: NVIDIA H200 (139 GB)", "cpu (2 cores)", "mps"."""
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return f"cuda: {properties.name} ({properties.total_memory / 1e9:.0f} GB)"
    if device.type == "cpu":
        cores = available_cores()
        return f"cpu ({cores} core{'' if cores == 1 else 's'})"
    return device.type


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 9R14"), from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


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
