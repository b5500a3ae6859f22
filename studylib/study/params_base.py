"""What every chapter's parameters share: the run's identity (model, checkpoint, name,
run_id), where it writes, and how it runs (threads, device, dtype). The chapters' own
knobs are in `studylib.study.params`, each class a subclass of `StudyParams`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

from studylib.analysis.paper import PAPER_MODEL
from studylib.errors import (
    check,
    check_at_least,
)
from studylib.results import run_id
from studylib.study.cells import package_version
from studylib.study.provenance import checkpoint_fingerprint, environment

# Knobs that change how or where a run executes, or its name, not what it computes: not in run_id.
NOT_IN_RUN_ID = ("key", "title", "threads", "results", "figures")


@dataclasses.dataclass(frozen=True)
class StudyParams:
    """Knobs every study shares. Every default lives in these dataclasses, and it is
    smoke-sized: a chapter notebook run as it stands (`overrides = {}`) is a quick test. What
    the book runs is each study file's `default` profile (params/<study>.yaml), which
    overrides only the knobs that differ."""
    key: str = "default"  # run name: executed notebook is <model>__<key>.ipynb
    title: str = ""  # its tab on the chapter page, in the reader's words ("" = the model)
    model: str = "toy-llava"  # model name used in results and file names
    checkpoint: str = ""  # checkpoint directory; "" means teachers/<model>
    arch: str = ""  # architecture label for results ("" = the model name)
    seed: int = 0  # evaluation subset and bootstrap seed
    limit: int = 12  # items per benchmark (seeded, stratified subset); 0 = all (~2,900)
    batch_size: int = 64  # evaluation batch size
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"
    dtype: str = "float32"  # float32 | bfloat16 | float16
    threads: int = 2  # torch threads in the kernel
    results: str = "results/results.jsonl"  # results table (JSON Lines)
    figures: str = "book/figures"  # where figures are saved

    STUDY: typing.ClassVar[str] = ""
    # A study that reads other studies' rows runs after them, and its run_id includes what
    # it read (so new upstream rows make it run again instead of being skipped).
    READS_RESULTS: typing.ClassVar[bool] = False

    def __post_init__(self) -> None:
        for name, v in (("model", self.model), ("key", self.key)):
            check(bool(v) and "/" not in v and "__" not in v,
                   f"{name} must be a short name without '/' or '__', got {v!r}")
        check_at_least(self, limit=0, seed=0, threads=1, batch_size=1)
        check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        check(self.dtype in ("float32", "bfloat16", "float16"),
               f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")

    # --- derived values -------------------------------------------------------------
    @property
    def study(self) -> str:
        return self.STUDY

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint or f"teachers/{self.model}")

    @property
    def checkpoints(self) -> list[Path]:
        """The checkpoints the run loads (the runner checks them before any run starts)."""
        return [self.checkpoint_dir]

    @property
    def arch_label(self) -> str:
        return self.arch or self.model

    @property
    def eval_limit(self) -> int | None:
        return self.limit or None

    @property
    def paper_model(self) -> str | None:
        return PAPER_MODEL.get(self.arch_label)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def config(self) -> dict[str, Any]:
        """What the run computes: every knob except how/where it runs, plus the study, a
        fingerprint of the checkpoint (a retrained teacher is a new run) and the version of
        studylib's code (a library change re-executes the chapter; its cells may still be
        reused, `studylib.study.cells`)."""
        cfg = {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IN_RUN_ID}
        cfg["study"] = self.study
        cfg["code"] = package_version()
        cfg["checkpoint"] = checkpoint_fingerprint(self.checkpoint_dir)
        return cfg

    def run_id(self) -> str:
        return run_id(self.config())

    def output_name(self) -> str:
        return f"{self.model}__{self.key}"

    def common(self, **extra: Any) -> dict[str, Any]:
        """Columns every result row of this run carries (the house schema plus provenance)."""
        return {"study": self.study, "arch": self.arch_label, "method": "none", "ratio": 0.0,
                "recipe": "none", "data_fraction": None, "limit": self.limit, "key": self.key,
                **environment(self.threads), **extra}

    def apply(self) -> None:
        """Set the kernel's thread count from the params (parallel workers get 1 each), quietly."""
        import warnings

        # before anything imports tqdm.auto (transformers does): no ipywidgets in the kernel
        warnings.filterwarnings("ignore", message="IProgress not found")
        import torch
        import transformers

        os.environ["STUDYLIB_THREADS"] = str(self.threads)
        torch.set_num_threads(self.threads)
        # A chapter shows results, not progress bars (they also render badly in the book).
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
