"""int8 weight quantization of the LLM, on top of pruning (`studylib quantize`, paper Table 9).

The paper loads its pruned and recovered LLaVA with bitsandbytes' LLM.int8 and reports
memory, latency and scores in fp16 and int8. `quantize_int8(model)` does the same to any
Llava-layout model, pruned ones included:

- **What is quantized**: every `nn.Linear` of the language model (attention and MLP
  projections of each decoder layer). The vision tower and the projector stay in floating
  point, and so does the LM head by default: transformers' bitsandbytes integration keeps
  the output layer in full precision (`get_keys_to_not_convert`), so the paper's int8
  model has a float LM head too (`lm_head=True` quantizes it anyway). The token embeddings
  are not Linear layers and stay float in both backends.
- **backend "torch"** (CPU): PyTorch's dynamic int8
  (`torch.ao.quantization.quantize_dynamic`, qint8). Weights are quantized once, per output
  channel and symmetric, as LLM.int8 does (its "vector-wise" row scales); activations are
  quantized on the fly per tensor to 8 bits (7 effective: fbgemm's `reduce_range`) and the
  matmul runs in int8. LLM.int8 instead quantizes activations per token and keeps outlier
  feature columns (|x| >= 6) in fp16; the torch path has no outlier decomposition, so it is
  the cruder of the two on activations. `torch.ao.quantization` is deprecated in favour of
  torchao but works in torch 2.13 (its deprecation warnings are silenced here).
- **backend "bitsandbytes"** (CUDA): LLM.int8 itself, through transformers'
  `BitsAndBytesConfig(load_in_8bit=True)` at load time (`load_int8(path)`); an in-memory
  model is saved to a temporary directory and reloaded. Needs the `bitsandbytes` package and
  a GPU, neither of which the CPU testbed has.
- **backend "auto"**: bitsandbytes for a model on a GPU, torch otherwise.

Weight memory (`weight_bytes`) is measured from the tensors: float parameters at their
element size, and for each quantized layer its int8 weight values plus the scales and
zero points stored with them and its bias. Buffers (rotary frequencies, position ids) are
not weights and are not counted. fbgemm's packed layout adds one int32 column offset per
output channel on top of the int8 values; that is left out (<1% of a layer here).

A dynamically quantized model holds packed weights that safetensors cannot store, and
quantizing takes well under a second, so the command line does not write a quantized
checkpoint: it quantizes at load time, measures and (with `--eval`) scores the model in
both precisions, and writes a JSON report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studylib import models
from studylib.errors import StudyError
from studylib.models import checkpoint

BACKENDS = ("auto", "torch", "bitsandbytes")
MIB = 2**20
# Module-name prefixes of the parts of a LlavaForConditionalGeneration.
PARTS = {"vision": ("model.vision_tower",), "projector": ("model.multi_modal_projector",),
         "llm": ("model.language_model", "lm_head")}
FLOAT_PARTS = ("vision_tower", "multi_modal_projector")  # never quantized


@dataclasses.dataclass
class QuantReport:
    """What was quantized, how, and the measured weight memory before and after."""

    backend: str
    scheme: str
    quantized_layers: int
    kept_float: list[str]
    bytes_before: dict[str, int]
    bytes_after: dict[str, int]
    wall_time_s: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Weight memory after / before (whole model)."""
        return self.bytes_after["total"] / self.bytes_before["total"]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ratio": self.ratio,
                "mib_before": self.bytes_before["total"] / MIB,
                "mib_after": self.bytes_after["total"] / MIB}


# ---------------------------------------------------------------------------------------------
# Measuring


def _dynamic_linear_types() -> tuple[type, ...]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    return (DynamicLinear,)


def _packed_bytes(module) -> int:
    """int8 values + stored scales/zero points + bias of a dynamically quantized Linear."""
    weight = module.weight()
    size = weight.numel() * weight.element_size()
    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scales, zeros = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
        size += scales.numel() * scales.element_size() + zeros.numel() * zeros.element_size()
    else:  # one double scale and one int64 zero point
        size += 16
    bias = module.bias()
    return size + (0 if bias is None else bias.numel() * bias.element_size())


def _part(name: str) -> str:
    for part, prefixes in PARTS.items():
        if name.startswith(prefixes):
            return part
    return "other"


def weight_bytes(model, float_bytes: int | None = None) -> dict[str, int]:
    """Bytes of the model's weights by part (total, vision, projector, llm, other).

    Float parameters count numel x element size (tied weights once), or numel x
    `float_bytes` when given (2: the size the same model would have with its float parts in
    fp16, as the paper ran it); dynamically quantized Linear layers count their int8
    values, scales, zero points and bias; a bitsandbytes int8 parameter also counts its row
    scales (`SCB`).
    """
    out = {"total": 0, "vision": 0, "projector": 0, "llm": 0, "other": 0}
    seen: set[int] = set()
    dynamic = _dynamic_linear_types()
    for name, module in model.named_modules():
        size = 0
        if isinstance(module, dynamic):
            size += _packed_bytes(module)
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            floating = p.is_floating_point() and float_bytes is not None
            size += p.numel() * (float_bytes if floating else p.element_size())
            scb = getattr(p, "SCB", None)
            if isinstance(scb, torch.Tensor):
                size += scb.numel() * scb.element_size()
        out[_part(name)] += size
        out["total"] += size
    return out


def is_quantized(model) -> bool:
    """True when any layer holds int8 weights (torch dynamic or bitsandbytes)."""
    dynamic = _dynamic_linear_types()
    return any(isinstance(m, dynamic) for m in model.modules()) or any(
        p.dtype == torch.int8 for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Quantizing


def _check_model(model) -> None:
    inner = getattr(model, "model", None)
    if not all(hasattr(inner, a) for a in ("language_model", "vision_tower",
                                           "multi_modal_projector")):
        raise StudyError(f"expected a Llava-layout model (vision tower, projector, language "
                         f"model), got {type(model).__name__}")
    if is_quantized(model):
        raise StudyError("the model is already quantized to int8")
    dtypes = {p.dtype for p in model.model.language_model.parameters()}
    if not dtypes <= {torch.float32, torch.float16, torch.bfloat16}:
        raise StudyError(f"the language model has non-float weights ({sorted(map(str, dtypes))})")


def _device(model) -> torch.device:
    return next(model.parameters()).device


def resolve_backend(model, backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise StudyError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto":
        return "bitsandbytes" if _device(model).type == "cuda" else "torch"
    return backend


def quantize_int8(model, backend: str = "auto", *, lm_head: bool = False):
    """Quantize the LLM's Linear weights to int8; returns `(model, QuantReport)`.

    The torch backend works in place on a CPU model (cast to fp32 first: the dynamic int8
    kernels take fp32 activations); bitsandbytes returns a newly loaded model on the GPU.
    """
    _check_model(model)
    backend = resolve_backend(model, backend)
    if backend == "bitsandbytes":
        return _bnb_from_memory(model, lm_head)
    if _device(model).type != "cpu":
        raise StudyError(f"backend torch (dynamic int8) runs on the CPU only; the model is on "
                         f"{_device(model)} (move it to the CPU or use backend bitsandbytes)")
    start = time.perf_counter()
    before = weight_bytes(model)
    if next(model.parameters()).dtype != torch.float32:
        model.float()
    targets = {"model.language_model": model.model.language_model}
    if lm_head:
        targets["lm_head"] = model.lm_head
    n = sum(isinstance(m, nn.Linear) for t in targets.values() for m in t.modules())
    if n == 0:
        raise StudyError("the language model has no nn.Linear layers to quantize")
    with _quiet_ao():
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        quantize_dynamic(model.model.language_model, {nn.Linear: per_channel_dynamic_qconfig},
                         dtype=torch.qint8, inplace=True)
        if lm_head:
            holder = nn.Module()
            holder.lm_head = model.lm_head
            model.lm_head = quantize_dynamic(holder, {nn.Linear: per_channel_dynamic_qconfig},
                                             dtype=torch.qint8).lm_head
    model.eval()
    report = QuantReport(
        backend="torch", scheme="dynamic int8: weights per output channel (symmetric qint8), "
                               "activations per tensor at run time (quint8, reduce_range)",
        quantized_layers=n, kept_float=_kept_float(lm_head), bytes_before=before,
        bytes_after=weight_bytes(model), wall_time_s=round(time.perf_counter() - start, 3))
    report.notes.append("torch.ao.quantization.quantize_dynamic (deprecated in favour of "
                        "torchao; works in torch " + torch.__version__.split("+")[0] + ")")
    return model, report


def _kept_float(lm_head: bool) -> list[str]:
    kept = ["vision_tower", "multi_modal_projector", "embed_tokens", "norms"]
    return kept if lm_head else [*kept, "lm_head"]


@contextlib.contextmanager
def _quiet_ao():
    """torch.ao.quantization's deprecation warnings, once per call, are noise here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per.*deprecated.*")
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        yield


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise StudyError("backend bitsandbytes needs the bitsandbytes package and a CUDA GPU "
                         "(pip install bitsandbytes); on the CPU use backend torch")
    if not torch.cuda.is_available():
        raise StudyError("backend bitsandbytes (LLM.int8) needs a CUDA GPU; on the CPU use "
                         "backend torch")


def _skip_modules(lm_head: bool) -> list[str]:
    return list(FLOAT_PARTS) if lm_head else [*FLOAT_PARTS, "lm_head"]


def load_int8(path: str | Path, *, lm_head: bool = False, device: str = "cuda"):
    """Load a checkpoint with LLM.int8 (bitsandbytes) weights in its LLM: (model, processor,
    QuantReport). Uniform pruned checkpoints load as any other; layer-range (non-uniform)
    ones cannot (bitsandbytes converts layers while transformers builds them from a config)."""
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    require_bitsandbytes()
    path = Path(path)
    if models.is_non_uniform(path):
        raise StudyError(f"{path} has layers of different widths (a layer-range pruned "
                         "checkpoint): bitsandbytes cannot load it; use backend torch")
    float_model, processor = models.load(path, dtype="float16")
    before = weight_bytes(float_model)
    del float_model
    start = time.perf_counter()
    config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=_skip_modules(lm_head))
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            str(path), quantization_config=config, dtype=torch.float16, device_map=device)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"cannot load {path} in int8: {first}") from exc
    model.eval()
    n = sum(p.dtype == torch.int8 for p in model.parameters())
    report = QuantReport(
        backend="bitsandbytes", scheme="LLM.int8: weights per row (int8 + fp32 scales), "
                                       "activations per token, outliers (|x| >= 6) in fp16",
        quantized_layers=int(n), kept_float=_kept_float(lm_head), bytes_before=before,
        bytes_after=weight_bytes(model), wall_time_s=round(time.perf_counter() - start, 3))
    report.notes.append("before = the same checkpoint loaded in fp16")
    return model, processor, report


def _bnb_from_memory(model, lm_head: bool):
    """bitsandbytes quantizes while loading: save the model (pruned configs made loadable,
    see `checkpoint.loadable_text_config`) to a temporary directory and load it in int8."""

    require_bitsandbytes()
    text_config = model.config.text_config
    layer_widths = {(layer.mlp.down_proj if hasattr(layer.mlp, "down_proj")
                     else layer.mlp.fc2).in_features for layer in models.text_layers(model)}
    if len(layer_widths) > 1:
        raise StudyError("layers of different widths (layer-range pruning): bitsandbytes "
                         "cannot load this model; use backend torch")
    with tempfile.TemporaryDirectory() as tmp:
        model.config.text_config = checkpoint.loadable_text_config(text_config)
        try:
            model.save_pretrained(tmp, safe_serialization=True)
        finally:
            model.config.text_config = text_config
        from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

        before = weight_bytes(model)
        start = time.perf_counter()
        config = BitsAndBytesConfig(load_in_8bit=True,
                                    llm_int8_skip_modules=_skip_modules(lm_head))
        device = _device(model) if _device(model).type == "cuda" else torch.device("cuda")
        quant = AutoModelForImageTextToText.from_pretrained(
            tmp, quantization_config=config, dtype=torch.float16, device_map=str(device))
    quant.eval()
    report = QuantReport(
        backend="bitsandbytes", scheme="LLM.int8 (bitsandbytes)",
        quantized_layers=int(sum(p.dtype == torch.int8 for p in quant.parameters())),
        kept_float=_kept_float(lm_head), bytes_before=before, bytes_after=weight_bytes(quant),
        wall_time_s=round(time.perf_counter() - start, 3),
        notes=[f"before = the model as given ({next(model.parameters()).dtype})"])
    return quant, report
