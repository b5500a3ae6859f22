"""The CPU kind: read from torch and oneDNN as they will run, kernels capped by environment."""

import json
import os
import subprocess
import sys

import torch

from studylib import machine


def kind_in_subprocess(**env) -> dict:
    """`machine.signature()` in a fresh interpreter (torch reads ATEN_CPU_CAPABILITY once)."""
    code = "import json; from studylib import machine; print(json.dumps(machine.signature()))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_the_signature_names_cpu_kernels_torch_and_threads():
    sig = machine.signature(3)
    assert set(sig) == {"cpu", "kind", "torch", "threads"}
    assert sig["threads"] == 3 and sig["torch"] == torch.__version__
    assert machine.signature()["threads"] == torch.get_num_threads()
    assert sig["kind"].startswith(machine.cpu_capability())


def test_capped_kernels_are_another_kind():
    """The AVX2 stand-in used to measure the other kind on an AVX-512 machine (README)."""
    capped = kind_in_subprocess(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    assert "AVX512" not in capped["kind"] and not capped["kind"].endswith("-bf16")
    assert capped["cpu"] == machine.cpu_id()  # the same CPU, other kernels


def test_bf16_is_not_native_when_onednn_is_capped_below_it(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not machine.bf16_native()
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in machine.describe()
