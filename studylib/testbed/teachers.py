"""Training on the Hugging Face stack: teachers from scratch (`studylib teacher`).

A teacher is made in three stages, as LLaVA is: (0) a vision encoder pretrained on its own
(`studylib.testbed.vision_pretrain`, per-cell shape/colour/size) and then frozen, as LLaVA starts
from CLIP; (1) alignment: projector and LLM trained on cell-by-cell descriptions only
(dense grounding, like LLaVA's caption pretraining); (2) instruction tuning on
conversations with questions of all six benchmark families. Loss: cross-entropy on answer
tokens only.

The learning rate matters more than anything else here. Measured on toy-llava, captions
only, batch 16: at lr 2e-3 the loss sat for 2000 steps at 0.23 (occupancy and size right,
colour and shape guessed from their priors: no grounding of colour); at lr 5e-4 it broke
through after ~250 steps and reached 0.05 by step 400.

Training goes through `transformers.Trainer`, so `accelerate launch` / `torchrun` with DDP,
FSDP or DeepSpeed runs the same code on several GPUs. On the CPU the defaults are fp32:
the study's reference CPU has no avx512_bf16, where bf16 autocast measured 2.6x slower.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from studylib import models
from studylib.errors import StudyError
from studylib.testbed import instructions, toy
from studylib.testbed.data import ConversationCollator
from studylib.testbed.vision_pretrain import pretrain_vision
from studylib.training import LossLog, training_arguments

# Teacher recipe per size: images x turns = question/answer pairs seen per epoch.
TEACHER_RECIPES: dict[str, dict[str, Any]] = {
    "default": dict(n_images=6000, turns=4, epochs=2, batch_size=8, lr=5e-4, logging_steps=10,
                    caption_rate=0.5,
                    vision=dict(n_images=4000, epochs=2, batch_size=64, lr=2e-3),
                    align=dict(n_images=8000, epochs=1, batch_size=16, lr=5e-4)),
    "micro": dict(n_images=600, turns=3, epochs=1, batch_size=16, lr=3e-3, logging_steps=2,
                  caption_rate=1.0,
                  vision=dict(n_images=256, epochs=1, batch_size=64, lr=2e-3),
                  align=dict(n_images=256, epochs=1, batch_size=16, lr=3e-3)),
}


# Optimizer steps into each stage at which training records a checksum of the weights
# (`training_summary.json` "prefix_checksums"). `tests/test_teachers.py` retrains up to these
# points only (`train_teacher(stop_after=stage)`), a cheap check that the code still trains
# the committed teachers; `make reproduce-teachers` retrains them in full, bit for bit.
CHECKSUM_STEP = 10
STAGES = ("vision", "align", "instruct")


def weights_sha256(model) -> str:
    """sha256 of every parameter and buffer, by name (bit-exact: any change shows)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checksum_callback(stage: str, checksums: dict[str, Any], stop: bool):
    """Record the weights' sha256 after CHECKSUM_STEP optimizer steps of `stage`; with
    `stop`, end the stage there (the LR schedule is the full run's, so the weights match)."""
    from transformers import TrainerCallback

    class _Checksum(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == CHECKSUM_STEP:
                checksums[stage] = {"step": CHECKSUM_STEP, "sha256": weights_sha256(model)}
                if stop:
                    control.should_training_stop = True

    return _Checksum()


def train_teacher(arch: str, out: str | Path | None, size: str = "default", seed: int = 0,
                  evaluate: Callable | None = None, stop_after: str | None = None,
                  **recipe_overrides) -> dict[str, Any]:
    """Train a toy MLLM from scratch (vision, alignment, instruction tuning) and save it.

    The loss is cross-entropy on answer tokens only. Deterministic for a given seed and
    thread count (`torch.get_num_threads()` is recorded in the summary). With `stop_after`
    (one of STAGES), training ends CHECKSUM_STEP steps into that stage, saves nothing, and
    returns only `{"prefix_checksums": ...}`, to compare with the full run's.

    `evaluate(model, processor)` (the CLI passes `studylib.evaluation.evaluate.evaluate`;
    the testbed sits below evaluation) scores the trained teacher into the summary.
    """
    from transformers import set_seed

    if stop_after is not None and stop_after not in STAGES:
        raise StudyError(f"stop_after must be one of {STAGES}, got {stop_after!r}")
    checksums: dict[str, Any] = {}

    def checksum(stage: str):
        return _checksum_callback(stage, checksums, stop=stage == stop_after)

    recipe = {**TEACHER_RECIPES[size], **recipe_overrides}
    set_seed(seed)
    model, processor = toy.build(arch, size, seed=seed)
    start = time.perf_counter()
    # Stage 0: a pretrained vision encoder (LLaVA starts from CLIP), frozen afterwards.
    # Trained jointly from scratch with a random LLM instead, the tower's features
    # collapsed to a near-constant (image-swap logit change 0.16 at init, 0.005 after 300
    # steps) and no answer was grounded in the image.
    vision_probe = pretrain_vision(model, processor, seed=seed, callbacks=[checksum("vision")],
                                   **recipe["vision"])
    if stop_after == "vision":
        return {"prefix_checksums": checksums}
    model.model.vision_tower.requires_grad_(False)
    vision_wall = time.perf_counter() - start
    collator = ConversationCollator(processor)
    losses = LossLog()
    llm_start = time.perf_counter()
    # Stage 1: alignment on descriptions only (turns=1, every first turn a description).
    align = recipe["align"]
    captions = instructions.instruction_set(align["n_images"], turns=1, seed=seed, caption_rate=1.0)
    align_steps = _fit(model, captions, collator, losses, seed=seed, epochs=align["epochs"],
                       batch_size=align["batch_size"], lr=align["lr"],
                       logging_steps=recipe["logging_steps"],
                       callbacks=[checksum("align")]).global_step
    if stop_after == "align":
        return {"prefix_checksums": checksums}
    # Stage 2: instruction tuning on conversations of all benchmark families.
    records = instructions.instruction_set(recipe["n_images"], turns=recipe["turns"], seed=seed,
                                     caption_rate=recipe["caption_rate"])
    result = _fit(model, records, collator, losses, seed=seed, epochs=recipe["epochs"],
                  batch_size=recipe["batch_size"], lr=recipe["lr"],
                  logging_steps=recipe["logging_steps"], step_offset=align_steps,
                  callbacks=[checksum("instruct")])
    if stop_after == "instruct":
        return {"prefix_checksums": checksums}
    llm_wall = time.perf_counter() - llm_start
    wall = time.perf_counter() - start
    model.eval()
    tokens = (_count_tokens(collator, captions) * align["epochs"]
              + _count_tokens(collator, records) * recipe["epochs"])
    summary: dict[str, Any] = {
        "arch": arch,
        "size": size,
        "seed": seed,
        "recipe": recipe,
        "vision_pretraining": {"cell_accuracy": vision_probe,
                               "wall_time_s": round(vision_wall, 1)},
        "steps": {"align": align_steps, "instruct": result.global_step},
        "tokens": tokens,
        "wall_time_s": round(wall, 1),
        "llm_stage_wall_time_s": round(llm_wall, 1),
        "tokens_per_s": round(tokens / llm_wall),
        "threads": torch.get_num_threads(),
        "final_loss": losses.rows[-1]["loss"] if losses.rows else math.nan,
        "prefix_checksums": checksums,
        "loss_log": losses.rows,
        "parameters": models.parameter_counts(model),
    }
    if evaluate is not None:
        report = evaluate(model, processor)
        summary["eval"] = report.summary()
        summary["eval_wall_time_s"] = round(report.wall_time, 1)
    models.save(model, processor, out, extra={"training_summary.json": summary},
                command="teacher")
    return summary


def _fit(model, records, collator, losses: LossLog, *, seed: int, epochs: float,
         batch_size: int, lr: float, logging_steps: int, step_offset: int = 0, callbacks=()):
    """One training stage with the HF Trainer; the loss log continues across stages."""
    from transformers import Trainer

    losses.step_offset = step_offset
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(tmp, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                  logging_steps=logging_steps)
        trainer = Trainer(model=model, args=args, train_dataset=records, data_collator=collator,
                          callbacks=[losses.callback, *callbacks])
        return trainer.train()


def _count_tokens(collator: ConversationCollator, records) -> int:
    return sum(len(collator.encode(r)[0]) for r in records)


def read_summary(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "training_summary.json"
    if not f.is_file():
        raise StudyError(f"no training_summary.json in {path}")
    return json.loads(f.read_text())
