"""Which arithmetic a training run uses, chosen from the device it runs on.

``precision="auto"`` trains in bf16 autocast where bf16 matmuls are fast: CUDA devices with
native bf16, and CPUs with AMX (Intel Sapphire Rapids and later). Elsewhere it trains in
fp32, the arithmetic the shipped models were trained in: without AMX the gain of bf16, if
any, depends on the CPU and the model size (``benchmarks/bench_pretrain.py`` measures both
on the machine at hand), and ``precision="bf16"`` asks for it explicitly. Master weights,
optimiser state and gradients stay float32 in every mode (autocast casts on the fly).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.cache
def cpu_amx() -> str | None:
    """Where this CPU's AMX bf16 support was found (a short phrase), or None without it."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private: guarded
    try:
        if probe is not None and probe():
            return "torch reports AMX tiles"
    except RuntimeError:
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags") and "amx_bf16" in line.split(":", 1)[-1].split():
            return "amx_bf16 in /proc/cpuinfo"
    return None


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(``"fp32"`` | ``"bf16"`` | ``"fp16"``, the reason) for ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    kind = device.type
    if precision == "fp16":
        if kind == "cuda":
            return "fp16", "asked for (loss scaling on)"
        warnings.warn(f"precision=fp16 needs CUDA; training in fp32 on {kind}", stacklevel=3)
        return "fp32", f"fp16 asked for, but it needs CUDA (device {kind})"
    if precision == "fp32":
        return "fp32", "asked for"
    if precision == "bf16":
        note = ""
        if kind == "cpu" and cpu_amx() is None:
            note = "; this CPU has no AMX (bench_pretrain.py tells whether bf16 pays here)"
        return "bf16", f"asked for{note}"
    if kind == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", f"auto: {torch.cuda.get_device_name(device)} has native bf16"
        return "fp32", f"auto: {torch.cuda.get_device_name(device)} has no native bf16"
    if kind == "cpu":
        found = cpu_amx()
        if found:
            return "bf16", f"auto: the CPU has AMX ({found}), bf16 matmuls are several times faster"
        return "fp32", "auto: the CPU has no AMX; bf16 is chosen only on CPUs with AMX"
    return "fp32", f"auto: bf16 is only chosen on CUDA and on CPUs with AMX (device {kind})"


def autocast(precision: str, device: torch.device):
    """The autocast context of a resolved precision (a no-op context for fp32)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


__all__ = ["PRECISIONS", "autocast", "cpu_amx", "resolve_precision"]
