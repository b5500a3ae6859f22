"""Which kind of CPU this is, and what that means for floats and speed.

Two kinds of x86-64 CPU have run this study (README, "CPU kinds"), and they differ in two ways
that matter:

- **Floats.** torch picks its kernels by instruction set (`ATEN_CPU_CAPABILITY`; oneDNN's by
  `ONEDNN_MAX_CPU_ISA`), and MKL by vendor and microarchitecture, so the same training run
  rounds differently on an AVX-512 CPU and an AVX2 one: exact (sha256) comparisons of trained
  weights hold only on the CPU that recorded them, with the same torch and thread count
  (`signature`).
- **Speed.** bf16 autocast needs oneDNN's native bf16 instructions (`avx512_bf16` or AMX):
  without them it measured 7.2-7.5x slower than fp32 for the toy teachers, and 1.3x slower
  even with them (`studylib.testbed.speed.DTYPE_COST`).

`kind()` names the kind; `studylib machine` prints it with the times measured on each kind.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# oneDNN ISA caps (`ONEDNN_MAX_CPU_ISA`) under which it still has native bf16 instructions.
_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        if not line.strip() and fields:
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_id() -> str:
    """Vendor, family and model ("AuthenticAMD family 25 model 17").

    Virtual machines often report a bare "AMD EPYC" as the model name for CPUs that round
    differently, so the numbers, not the name, identify the microarchitecture."""
    info = _cpuinfo()
    if not all(k in info for k in ("vendor_id", "cpu family", "model")):
        return platform.processor() or platform.machine()
    return f"{info['vendor_id']} family {info['cpu family']} model {info['model']}"


def cpu_model() -> str:
    """The model name the CPU reports (for people; `cpu_id` is what identifies it)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_capability() -> str:
    """The instruction set torch's own kernels use: "AVX512", "AVX2", "DEFAULT", ...
    (`ATEN_CPU_CAPABILITY` lowers it)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def bf16_native() -> bool:
    """Whether bf16 matmuls run on native instructions: the CPU has them (avx512_bf16 or AMX)
    and `ONEDNN_MAX_CPU_ISA` does not cap oneDNN below them."""
    import torch

    if not torch.cpu._is_avx512_bf16_supported():
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return cap.startswith(_BF16_ISAS)


def kind() -> str:
    """The CPU kind as the README's tables name it: "AVX512-bf16", "AVX512", "AVX2", ..."""
    capability = cpu_capability()
    return f"{capability}-bf16" if bf16_native() else capability


def signature(threads: int | None = None) -> dict[str, object]:
    """What must match for two runs to round identically: the CPU (by id), the kernels torch
    and oneDNN use on it, torch's version and the thread count (default: the current one)."""
    import torch

    return {"cpu": cpu_id(), "kind": kind(), "torch": torch.__version__,
            "threads": torch.get_num_threads() if threads is None else threads}


def is_recording_machine(recorded: dict[str, object]) -> bool:
    """Whether this machine rounds as the one whose `signature` is `recorded` did, at its
    thread count: only then can weights be compared bit for bit."""
    return signature(recorded["threads"]) == recorded


def line() -> str:
    """One line for provenance tables: system, cores, CPU model and kind."""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpus, {cpu_model()}, "
            f"{kind()}")


def describe() -> str:
    """Several lines for a person: the CPU, its kind, and how the kind was found."""
    import torch

    sig = signature()
    bf16 = "native (avx512_bf16 or AMX)" if bf16_native() else "emulated: slow, use float32"
    lines = [
        f"cpu:    {cpu_model()} ({sig['cpu']}), {os.cpu_count()} logical cores",
        f"kind:   {sig['kind']}  (torch kernels {cpu_capability()}; bf16 {bf16})",
        f"torch:  {torch.__version__}, {sig['threads']} thread(s)",
    ]
    overrides = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                            "MKL_ENABLE_INSTRUCTIONS") if k in os.environ}
    if overrides:
        lines.append("env:    " + " ".join(f"{k}={v}" for k, v in overrides.items())
                     + " (kernels capped: this machine stands in for another kind)")
    return "\n".join(lines)
