"""Load and save any image-text-to-text checkpoint in the llava-hf layout (pruned ones too).

A local directory or a Hugging Face Hub id; errors become one StudyError line. The toy
models of the testbed are built in `studylib.testbed.toy`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from studylib.errors import StudyError
from studylib.models import surgery
from studylib.outputs import atomic_dir


def load(path_or_id: str | os.PathLike, trust_remote_code: bool = False,
         dtype: Any = None, device: str | None = None):
    """Load any image-text-to-text checkpoint (llava-hf layout) with its processor.

    A local path (`is_local`) must be a directory holding a config; a hub id is passed
    through to transformers (which needs network access). Failures become one clear
    StudyError line.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(path_or_id).expanduser()
    if check_local(path_or_id):
        if is_non_uniform(path):  # layers of different widths: no standard config
            model, processor = load_pruned(path)
            return model.to(device or "cpu", dtype=_torch_dtype(dtype)), processor
    with checkpoint_errors(path_or_id):
        model = AutoModelForImageTextToText.from_pretrained(
            str(path), trust_remote_code=trust_remote_code, dtype=dtype or "float32"
        )
        processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if device:
        model.to(device)
    model.eval()
    return model, processor


def check_local(path_or_id: str | os.PathLike) -> bool:
    """Whether `path_or_id` is local (`is_local`); if so, it must be a directory with a
    config and weights, else one StudyError line."""
    if not is_local(path_or_id):
        return False
    path = Path(path_or_id).expanduser()
    if not path.is_dir():
        raise StudyError(f"no checkpoint at {path_or_id}")
    if not (path / "config.json").is_file():
        raise StudyError(f"not a checkpoint (no config.json): {path}")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise StudyError(f"not a checkpoint (no weights, *.safetensors or *.bin): {path}")
    return True


def peek(path_or_id: str | os.PathLike):
    """A checkpoint's (config, processor) without its weights: what the checks that come
    before loading need (vocabulary, widths, depth, chat template, default lengths). A local
    checkpoint's safetensors headers are read too (a cut-off file fails here, in
    milliseconds, not after another model has loaded)."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoProcessor

    local = check_local(path_or_id)
    path = Path(path_or_id).expanduser()
    with checkpoint_errors(path_or_id):
        for file in sorted(path.glob("*.safetensors")) if local else ():
            with safe_open(str(file), "pt"):
                pass
        return AutoConfig.from_pretrained(str(path)), AutoProcessor.from_pretrained(str(path))


DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(name: str | None) -> str:
    """"auto" (or None) is CUDA when torch sees a GPU, else the CPU; "cuda" without one is
    refused in one line, before any weights load."""
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in DEVICES:
        raise StudyError(f"unknown device {name!r}; choose from {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise StudyError("--device cuda: torch sees no CUDA device here")
    return name


def is_local(path_or_id: str | os.PathLike) -> bool:
    """Whether a model argument names a local directory rather than a Hugging Face Hub id.

    Hub ids have the form `org/name`: exactly one slash, no leading `.` or `~`. Everything
    else is local: a path that exists, one with no slash or several, one starting with `.`,
    `/` or `~`, and an `org/name` whose `org` exists here (`teachers/toy-lava` is a typo in a
    local path, not a hub repository). So a mistyped path fails at once, instead of after
    transformers has retried the hub for about a minute.
    """
    text = os.fspath(path_or_id)
    org, _, name = text.partition("/")
    hub_shaped = bool(org and name) and "/" not in name and org[0] not in ".~"
    return not hub_shaped or Path(text).exists() or Path(org).exists()


@contextlib.contextmanager
def checkpoint_errors(path_or_id: str | os.PathLike):
    """Turn any failure to read a checkpoint into one StudyError line: transformers and
    safetensors raise many types (a truncated file, a bad config), the user needs one line."""
    try:
        yield
    except StudyError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"cannot load checkpoint {path_or_id}: {first}") from exc


def is_non_uniform(path: Path) -> bool:
    return read_report(path).get("uniform", True) is False


def _torch_dtype(dtype: Any):
    import torch

    if dtype is None:
        return torch.float32
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def save(model, processor, out: str | os.PathLike, extra: dict[str, Any] | None = None,
         command: str = "save") -> Path:
    """Save weights (safetensors), config and processor, and `extra` JSON files, atomically.

    `studylib.outputs.atomic_dir` writes a hidden sibling and swaps it in, so a kill at any
    moment leaves `out` whole (old or new), marked as studylib's for a later `--overwrite`.
    """
    out = Path(out)
    with atomic_dir(out, command) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        for name, payload in (extra or {}).items():
            (tmp / name).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return out


# ---------------------------------------------------------------------------------------------
# Pruned checkpoints


REPORT_FILE = "pruning_report.json"


def config_summary(model) -> dict[str, Any]:
    tc = surgery.text_config(model)
    hd = surgery.head_dim(tc)
    return {
        "model_type": tc.model_type,
        "num_hidden_layers": len(surgery.text_layers(model)),
        "num_attention_heads": tc.num_attention_heads,
        "num_key_value_heads": tc.num_key_value_heads,
        "head_dim": hd,
        "intermediate_size": tc.intermediate_size,
        "hidden_size": tc.hidden_size,
        "layer_shapes": [dataclasses.asdict(surgery.layer_shape(layer, hd))
                         for layer in surgery.text_layers(model)],
    }


def loadable_text_config(tc):
    """The text config to save so plain `from_pretrained` rebuilds this (pruned) LLM.

    transformers refuses a Llama config whose hidden size is not a multiple of the head
    count; Mistral (with no sliding window) is the same architecture with the same weight
    names and has no such check. Other configs are returned unchanged.
    """
    from transformers import MistralConfig

    hd = surgery.head_dim(tc)
    if tc.model_type != "llama" or tc.num_attention_heads * hd == tc.hidden_size:
        return tc
    if getattr(tc, "attention_bias", False) or getattr(tc, "mlp_bias", False):
        raise StudyError("a head-pruned Llama with biases has no loadable standard config")
    fields = {f.name for f in dataclasses.fields(MistralConfig)} - {"architectures"}
    values = {k: v for k, v in tc.to_dict().items() if k in fields}
    values.update(head_dim=hd, sliding_window=None)
    return MistralConfig(**values)


def save_pruned(model, processor, report, out: str | os.PathLike) -> Path:
    """Save weights, a loadable config, the processor and pruning_report.json (atomically)."""
    original = model.config.text_config
    text_config = loadable_text_config(original)
    payload = report.to_dict()
    if text_config is not original:
        payload["notes"] = [*payload["notes"], "text config saved as Mistral (Llama with "
                            "heads x head_dim != hidden_size; same architecture)"]
    model.config.text_config = text_config
    try:
        return save(model, processor, out, extra={REPORT_FILE: payload}, command="prune")
    finally:
        model.config.text_config = original


def load_pruned(path: str | os.PathLike):
    """Load any pruned checkpoint; layers of different widths are rebuilt from the report.

    Uniform checkpoints are ordinary transformers checkpoints (`load`). A
    `layer_range` width-pruned model keeps the unpruned widths in its config, so the model
    is built from the config, each layer is cut to the width the report records, and the
    saved weights are loaded strictly into it.
    """
    path = Path(path)
    report = read_report(path)
    if report.get("uniform", True):
        return load(path)
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    with checkpoint_errors(path):  # a truncated file, a config that does not fit
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(path))
        _resize_layers(model, report["config_after"]["layer_shapes"])
        saved = {}
        for file in sorted(path.glob("*.safetensors")):
            saved.update(load_file(file))
        state = {name: saved.get(key) for name, key in _saved_names(model).items()}
        absent = [name for name, tensor in state.items() if tensor is None]
        if absent:
            raise StudyError(f"checkpoint {path} does not match its pruning report "
                             f"(no weights for {absent[:3]})")
        model.load_state_dict(state, strict=True)
        processor = AutoProcessor.from_pretrained(path)
    model.eval()
    return model, processor


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's pruning report ({} when it has none), checked as far as loading needs
    it: `uniform`, and for a non-uniform model the width of every layer. Else one StudyError
    line, before any weights are read."""
    file = Path(path) / REPORT_FILE
    if not file.is_file():
        return {}
    try:
        report = json.loads(file.read_text())
        if not isinstance(report["uniform"], bool):
            raise TypeError(f"uniform must be true or false, got {report['uniform']!r}")
        if not report["uniform"]:
            for shape in report["config_after"]["layer_shapes"]:
                if not all(isinstance(shape[k], int) for k in ("kv_heads", "intermediate")):
                    raise TypeError(f"layer widths must be integers, got {shape!r}")
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError too
        raise StudyError(f"{file} is not a pruning report ({type(exc).__name__}: {exc})") from None
    return report


def _saved_names(model) -> dict[str, str]:
    """Parameter name -> the name save_pretrained wrote (transformers renames Llava's keys)."""
    from transformers.core_model_loading import revert_weight_conversion

    state = model.state_dict()
    saved = revert_weight_conversion(model, dict(state))
    by_tensor = {id(t): key for key, t in saved.items()}
    return {name: by_tensor.get(id(t), name) for name, t in state.items()}


def _resize_layers(model, layer_shapes: list[dict[str, int]]) -> None:
    tc = surgery.text_config(model)
    hd, n_rep = surgery.head_dim(tc), tc.num_attention_heads // tc.num_key_value_heads
    for layer, want in zip(surgery.text_layers(model), layer_shapes, strict=True):
        have = surgery.layer_shape(layer, hd)
        groups = list(range(want["kv_heads"], have.kv_heads))
        channels = list(range(want["intermediate"], have.intermediate))
        surgery.prune_layer_width(layer, groups, channels, hd, n_rep)
