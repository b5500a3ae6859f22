"""Recovery training of a pruned student from its unpruned teacher (`studylib recover`).

L = alpha * SFT + beta * logits KD + gamma * hidden L2 (a `RecoveryRecipe`), trained with a
`transformers.Trainer` subclass whose only change is `compute_loss`, so `torchrun` /
`accelerate launch` (DDP, FSDP, DeepSpeed) run it unchanged. The vision tower is always
frozen; `train="mm"` trains the projector, `"mm+lora"` also puts LoRA on the LLM's linear
layers (merged into the weights before saving, so the checkpoint is a plain model).

Data: `training_records()` is the "100%" set (4000 ShapesWorld images x 3 question/answer
turns, seed 0, LLaVA format), drawn as the teachers' closing mix (`subsets.RECOVERY_MIX`).
A fraction is a seeded subset: a fixed permutation of the records cut at `round(f * n)`,
so 5% is inside 10% is inside 20%. Its indices and content
hash go to `subset.json` next to the checkpoint; `--subset FILE` reuses one. Real
LLaVA-format records (`--data`, `testbed.realdata`) take the place of the default set
under the same rule, with an image loader that opens their files.

Teacher signals that do not depend on the student (hidden states for L2, top-k logits) are
computed once per (teacher, subset) and cached as safetensors under
`<cache_dir>/<teacher fingerprint>-<subset hash>/`, shared by all students and recipes;
exact logits KD (`topk=0`) runs the teacher online under `no_grad`, and that forward then
also supplies the hidden states (no cache is built for such recipes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from studylib import models
from studylib.compress import losses, recipes
from studylib.compress.recipes import RecoveryRecipe
from studylib.compress.students import (
    check_pair,
    finish_student,
    prepare_student,
    trainable_parameters,
)
from studylib.compress.subsets import load_subset, select_subset, training_records
from studylib.compress.teacher_cache import TeacherCache, default_cache_dir, teacher_fingerprint
from studylib.errors import StudyError, check_fraction, check_positive
from studylib.models.surgery import LayerTap
from studylib.testbed import shapes
from studylib.testbed.data import ConversationCollator, default_image_aspect
from studylib.training import LossLog, training_arguments

# ---------------------------------------------------------------------------------------------
# Trainer


class IndexedCollator:
    """Collate {"pos", "record"} items; `subset_pos` lets compute_loss find cached rows."""

    def __init__(self, collator: ConversationCollator):
        self.collator = collator

    def __call__(self, items):
        batch = self.collator([it["record"] for it in items])
        batch["subset_pos"] = torch.tensor([it["pos"] for it in items], dtype=torch.long)
        return batch


def _trainer_class():
    from transformers import Trainer, TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t)

    class RecoveryTrainer(Trainer):
        """Trainer whose loss is the recipe's; the teacher runs online or comes from a cache."""

        def __init__(self, *args, recipe: RecoveryRecipe, teacher=None,
                     cache: TeacherCache | None = None, student_tap: LayerTap | None = None,
                     **kwargs):
            self.timer = StepTimer()
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), self.timer]
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # our loss is a per-token mean already
            self.recipe = recipe
            self.teacher = teacher
            self.cache = cache
            self.student_tap = student_tap
            self.teacher_tap = None
            self.loss_rows: list[dict[str, float]] = []
            self.seen_positions: list[int] = []
            r = recipe
            self.hidden_cached = r.gamma > 0 and cache is not None and bool(cache.hidden)
            self.logits_cached = r.beta > 0 and cache is not None and cache.topk is not None
            self.online = (r.beta > 0 and not self.logits_cached) or \
                (r.gamma > 0 and not self.hidden_cached)
            if self.online:
                if teacher is None:
                    raise StudyError("recipe needs the teacher online but none was given")
                teacher.requires_grad_(False).eval()
                if r.gamma > 0:
                    self.teacher_tap = LayerTap(teacher, r.match_layers)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            r = self.recipe
            positions = inputs.pop("subset_pos").cpu()
            labels = inputs.pop("labels")
            self.seen_positions += positions.tolist()
            outputs = model(**inputs, use_cache=False)
            logits = outputs.logits
            mask = losses.kd_mask(labels)
            parts: dict[str, torch.Tensor] = {}
            if r.alpha > 0:
                parts["sft"] = losses.answer_cross_entropy(logits, labels)
            t_logits = None
            if self.online:
                device = logits.device
                if next(self.teacher.parameters()).device != device:
                    self.teacher.to(device)
                with torch.no_grad():
                    t_logits = self.teacher(**inputs, use_cache=False).logits
            if r.beta > 0:
                form = dict(tau=r.tau, kind=r.logits, skew=r.skew, jsd_beta=r.jsd_beta)
                if self.logits_cached:
                    values, indices = self.cache.topk_rows(positions)
                    s = logits[mask]
                    parts["logits"] = losses.topk_logits_kd(
                        s, values.to(s.device), indices.to(s.device), **form)
                else:
                    parts["logits"] = losses.logits_kd(logits, t_logits, mask, **form)
            if r.gamma > 0:
                terms = []
                for layer in r.match_layers:
                    s = self.student_tap.outputs[layer]
                    if self.hidden_cached:
                        t = self.cache.hidden_rows(layer, positions).to(s.device)
                        s = s[mask]
                        if s.shape[0] != t.shape[0]:
                            raise StudyError("teacher cache does not match the batch "
                                             f"({t.shape[0]} vs {s.shape[0]} positions)")
                        terms.append(losses.hidden_l2(s, t))
                    else:
                        terms.append(losses.hidden_l2(s, self.teacher_tap.outputs[layer], mask))
                parts["match"] = torch.stack(terms).mean()  # mean over matched layers
            weights = {"sft": r.alpha, "logits": r.beta, "match": r.gamma}
            loss = sum(weights[k] * v for k, v in parts.items())
            row = {"step": self.state.global_step + 1, "loss": float(loss.detach())}
            row.update({k: float(v.detach()) for k, v in parts.items()})
            self.loss_rows.append(row)
            return (loss, outputs) if return_outputs else loss

    return RecoveryTrainer


# ---------------------------------------------------------------------------------------------
# recover()


@dataclasses.dataclass
class RecoveryReport:
    """What `recover` returns: the JSON-able summary plus the trained (merged) model."""

    summary: dict[str, Any]
    model: Any = None
    processor: Any = None
    seen_positions: list[int] = dataclasses.field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]


@contextlib.contextmanager
def teacher_stays_put(model):
    """Recovery moves the teacher (onto the training device to build its cache, to the CPU
    when only the cache is read, onto the logits' device when it runs online); the caller's
    model goes back to the device it came on, even when training fails."""
    device = next(model.parameters()).device
    try:
        yield
    finally:
        model.to(device)


def _in_memory(spec) -> bool:
    return isinstance(spec, (tuple, list)) and len(spec) == 2


def _peek(spec):
    """(config, processor) of a (model, processor) pair or a checkpoint, weights unread."""
    return (spec[0].config, spec[1]) if _in_memory(spec) else models.peek(spec)


def _load(spec, dtype=None, device=None):
    if _in_memory(spec):
        return spec[0], spec[1], None
    model, processor = models.load(spec, dtype=dtype, device=device)
    return model, processor, Path(spec)


def recover(student, teacher, recipe: str | Path | RecoveryRecipe,
            records: Sequence[dict[str, Any]] | None = None, data_fraction: float = 1.0,
            epochs: float | None = None, seed: int = 0, out: str | Path | None = None, *,
            subset_seed: int = 0, subset_file: str | Path | None = None,
            cache_dir: str | Path | None = None, use_cache: bool = True,
            max_steps: int | None = None, progress: bool = True,
            training_overrides: dict[str, Any] | None = None, image_loader=None,
            data_file: str | None = None, dtype: str | None = None,
            device: str | None = None, max_length: int | None = None,
            image_aspect: str | None = None) -> RecoveryReport:
    """Train `student` (dir or (model, processor)) to recover towards `teacher` by `recipe`.

    Everything is validated before anything is written. In a DDP run every rank computes the
    same subset; rank 0 builds the teacher cache first (others then read it) and alone
    writes `out`: the merged checkpoint + `recovery_report.json` + `subset.json`.
    An in-memory student is trained in place.

    `records` default to the ShapesWorld set (`training_records()`); real LLaVA-format
    records (`testbed.realdata.read_records`) come with `image_loader`
    (`testbed.data.folder_loader(dir)`) to open their images, and `data_file` (their
    file, for the report). `max_length` and `image_aspect` default to the student's
    (`testbed.data.default_max_length`, `default_image_aspect`); records that lose turns
    to the length are counted in the report, and records left with no answer are dropped.
    `dtype` / `device` apply to checkpoints loaded from a directory ("cpu" also keeps the
    Trainer on the CPU). The teacher is checked first, then the pair (`check_pair`), then
    the records' lengths, all before any weights load.
    """
    from transformers import set_seed

    recipe = recipes.get(recipe)
    data_fraction = check_fraction(data_fraction)
    epochs = check_positive(recipe.epochs if epochs is None else epochs, "epochs")
    real_data = records is not None
    records = list(training_records() if records is None else records)
    subset = load_subset(subset_file, records) if subset_file else \
        select_subset(records, data_fraction, subset_seed)  # before loading: errors come first
    data_fraction = subset.fraction  # a reused subset file decides the fraction
    sub_records = [records[i] for i in subset.indices]
    t_config, t_proc = _peek(teacher)  # a bad teacher fails before the student loads
    s_config, s_proc = _peek(student)
    check_pair(s_config, s_proc.tokenizer, t_config, t_proc.tokenizer, recipe)
    collator = ConversationCollator(
        s_proc, image_loader=image_loader or shapes.load_image, max_length=max_length,
        image_aspect=image_aspect or default_image_aspect(s_config, real_data), config=s_config)
    sub_records, fit = collator.fit(sub_records, progress=progress)
    image_source = None if image_loader is None else str(getattr(image_loader, "root",
                                                                 image_loader))
    s_model, s_proc, s_path = _load(student, dtype, device)
    t_model, t_proc, t_path = _load(teacher, dtype, device)

    set_seed(seed)
    start = time.perf_counter()
    overrides = dict(training_overrides or {})
    if max_steps:
        overrides["max_steps"] = max_steps
    if device == "cpu":
        overrides.setdefault("use_cpu", True)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        overrides.setdefault("ddp_backend", "gloo")
    with tempfile.TemporaryDirectory() as tmp, teacher_stays_put(t_model):
        args = training_arguments(tmp, epochs=epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                                  seed=seed, logging_steps=recipe.logging_steps,
                                  warmup_ratio=recipe.warmup_ratio,
                                  disable_tqdm=not progress, **overrides)
        cache, cache_info = None, {"used": False}
        want_topk = recipe.beta > 0 and recipe.topk > 0
        exact_kd = recipe.beta > 0 and not want_topk  # the teacher runs online anyway:
        want_hidden = (recipe.gamma > 0 and recipe.cache_hidden and use_cache  # its hidden
                       and not exact_kd)  # states then come free with its logits
        if want_hidden or want_topk:
            fp = teacher_fingerprint(t_model, t_path)
            directory = Path(cache_dir or default_cache_dir()) / TeacherCache.key(
                fp, subset, collator.max_length, image_source, collator.image_aspect)
            t_model.to(args.device)
            with args.main_process_first(desc="teacher cache"):
                cache = TeacherCache(directory).ensure(
                    t_model, collator, sub_records,
                    recipe.match_layers if want_hidden else (),
                    recipe.topk if want_topk else 0, progress=progress)
            cache_info = {"used": True, "dir": str(directory), "built": cache.built,
                          "hit": not cache.built}
        online = (recipe.beta > 0 and not want_topk) or (recipe.gamma > 0 and not want_hidden)
        if not online:
            t_model.to("cpu")
        student_tap = LayerTap(s_model, recipe.match_layers) if recipe.gamma > 0 else None
        model = prepare_student(s_model, recipe)
        counts = trainable_parameters(model)
        dataset = [{"pos": j, "record": rec} for j, rec in enumerate(sub_records)]
        losslog = LossLog()
        trainer = _trainer_class()(
            model=model, args=args, train_dataset=dataset, data_collator=IndexedCollator(collator),
            callbacks=[losslog.callback], recipe=recipe, teacher=t_model if online else None,
            cache=cache, student_tap=student_tap)
        result = trainer.train()
        if student_tap:
            student_tap.remove()
        if trainer.teacher_tap:
            trainer.teacher_tap.remove()
        trained = finish_student(trainer.model)
        is_main = trainer.is_world_process_zero()
        world = args.world_size
    wall = time.perf_counter() - start
    steps = trainer.timer.times[1:] or trainer.timer.times
    summary: dict[str, Any] = {
        "recipe": recipe.to_dict(),
        "student": str(s_path.resolve()) if s_path else None,
        "teacher": str(t_path.resolve()) if t_path else None,
        "data": data_file,
        "image_folder": image_source,
        "lengths": fit.to_dict(),
        "image_aspect": collator.image_aspect,
        "data_fraction": data_fraction,
        "subset": {k: v for k, v in subset.to_dict().items() if k != "indices"},
        "subset_hash": subset.hash,
        "epochs": epochs,
        "seed": seed,
        "steps": result.global_step,
        "world_size": world,
        "parameters": counts,
        "teacher_online": online,
        "teacher_cache": cache_info,
        "wall_time_s": round(wall, 2),
        "step_time_s": {"median": statistics.median(steps) if steps else math.nan,
                        "mean": statistics.fmean(steps) if steps else math.nan},
        "threads": torch.get_num_threads(),
        "losses": trainer.loss_rows,
        "loss_log": losslog.rows,
        "final_loss": trainer.loss_rows[-1]["loss"] if trainer.loss_rows else math.nan,
    }
    if out is not None and is_main:
        models.save(trained, s_proc, out, extra={"recovery_report.json": summary,
                                                 "subset.json": subset.to_dict()},
                    command="recover")
        summary["out"] = str(out)
    return RecoveryReport(summary, trained, s_proc, trainer.seen_positions)
