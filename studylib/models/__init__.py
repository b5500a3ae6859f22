"""Checkpoints of any llava-hf-layout MLLM: loading and saving (pruned ones too), and the
decoder geometry and surgery that pruning uses.

`from studylib import models` gives the everyday names; the rest live in `checkpoint`
(files) and `surgery` (layers, heads, channels).
"""

from studylib.models.checkpoint import (
    check_local,
    checkpoint_errors,
    is_local,
    is_non_uniform,
    load,
    load_pruned,
    peek,
    read_report,
    resolve_device,
    save,
    save_pruned,
)
from studylib.models.surgery import parameter_counts, text_layers

__all__ = ["check_local", "checkpoint_errors", "is_local", "is_non_uniform", "load", "load_pruned", "parameter_counts", "peek",
           "read_report", "resolve_device", "save", "save_pruned", "text_layers"]
