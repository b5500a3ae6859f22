"""Recovery training of a pruned student from its unpruned teacher (`studylib recover`).

L = alpha * SFT + beta * logits KD + gamma * hidden L2 (a `RecoveryRecipe`), trained with a
`transformers.Trainer` subclass whose only change is `compute_loss`, so `torchrun` /
`accelerate launch` (DDP, FSDP, DeepSpeed) run it unchanged. The vision tower is always
frozen; `train="mm"` trains the projector, `"mm+lora"` also puts LoRA on the LLM's linear
layers (merged into the weights before saving, so the checkpoint is a plain model).

Data: `training_records()` is the "100%" set (4000 ShapesWorld images x 3 question/answer
turns, seed 0, LLaVA format). A fraction is a seeded subset: a fixed permutation of the
records cut at `round(f * n)`, so 5% is inside 10% is inside 20%. Its indices and content
hash go to `subset.json` next to the checkpoint; `--subset FILE` reuses one.

Teacher signals that do not depend on the student (hidden states for L2, top-k logits) are
computed once per (teacher, subset) and cached as safetensors under
`<cache_dir>/<teacher fingerprint>-<subset hash>/`, shared by all students and recipes;
exact logits KD (`topk=0`) runs the teacher online under `no_grad`, and that forward then
also supplies the hidden states (no cache is built for such recipes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
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
from studylib.errors import StudyError, check_fraction, check_positive
from studylib.testbed import shapes
from studylib.testbed.data import ConversationCollator

# The "100%" recovery set: 4000 images x 3 turns = 12,000 question/answer pairs.
DEFAULT_DATA = dict(n_images=4000, turns=3, seed=0)
LORA_TARGETS = {
    # Regexes (peft full-matches module names) limited to the language model: a plain name
    # list would also wrap the vision tower's q/k/v (CLIP) or fc1/fc2 (SigLIP).
    "llama": r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    "phi": r".*language_model.*\.(q_proj|k_proj|v_proj|dense|fc1|fc2)",
}
LORA_TARGETS["mistral"] = LORA_TARGETS["qwen2"] = LORA_TARGETS["llama"]
CACHE_ENV = "STUDYLIB_TEACHER_CACHE"


def training_records(n_images: int = DEFAULT_DATA["n_images"], turns: int = DEFAULT_DATA["turns"],
                     seed: int = DEFAULT_DATA["seed"]) -> list[dict[str, Any]]:
    """The default ("100%") recovery set in LLaVA format (images render on demand)."""
    return shapes.instruction_set(n_images, turns=turns, seed=seed)


# ---------------------------------------------------------------------------------------------
# Data fractions


@dataclasses.dataclass(frozen=True)
class Subset:
    fraction: float
    seed: int
    n_total: int
    indices: tuple[int, ...]
    hash: str  # sha256 of the selected records' content (order of `indices`)

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed, "n_total": self.n_total,
                "n": len(self.indices), "hash": self.hash, "indices": list(self.indices)}


def _records_hash(records: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True).encode())
    return h.hexdigest()


def select_subset(records: Sequence[dict[str, Any]], fraction: float, seed: int = 0) -> Subset:
    """A seeded subset of `round(fraction * n)` records (at least 1); nested across fractions."""
    fraction = check_fraction(fraction)
    n = len(records)
    if n == 0:
        raise StudyError("no training records")
    k = max(1, round(fraction * n))
    order = random.Random(seed).sample(range(n), n)
    indices = tuple(sorted(order[:k]))
    return Subset(fraction, seed, n, indices, _records_hash([records[i] for i in indices]))


def load_subset(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> Subset:
    """Reuse a saved subset.json; its hash must match these records (else the data changed)."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"subset file not found: {path}")
    try:
        d = json.loads(path.read_text())
        indices = tuple(int(i) for i in d["indices"])
        subset = Subset(float(d["fraction"]), int(d["seed"]), int(d["n_total"]), indices,
                        str(d["hash"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path} is not a subset file ({type(exc).__name__}: {exc})") from None
    if subset.n_total != len(records) or max(indices, default=-1) >= len(records) or \
            _records_hash([records[i] for i in indices]) != subset.hash:
        raise StudyError(f"{path} does not match the training records (hash differs)")
    return subset


# ---------------------------------------------------------------------------------------------
# Models: what trains, and where hidden states are read


def _base(model):
    """The LlavaForConditionalGeneration under DDP / peft wrappers."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


class LayerTap:
    """Forward hooks keeping decoder-layer outputs (before the final norm) by negative index."""

    def __init__(self, model, indices: Sequence[int]):
        layers = models.text_layers(_base(model))
        self.outputs: dict[int, torch.Tensor] = {}
        self.handles = [layers[len(layers) + i].register_forward_hook(self._keep(i))
                        for i in indices]

    def _keep(self, index: int):
        def hook(module, args, output):
            self.outputs[index] = output[0] if isinstance(output, tuple) else output
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def prepare_student(model, recipe: RecoveryRecipe):
    """Freeze the vision tower (always) and choose the trainable parameters.

    "mm": projector only. "mm+lora": peft LoRA on the LLM's linear layers (regex limited to
    the language model) plus the projector trained in full (`modules_to_save`).
    """
    model.requires_grad_(False)
    if recipe.train == "mm":
        model.model.multi_modal_projector.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    kind = model.config.text_config.model_type
    if kind not in LORA_TARGETS:
        raise StudyError(f"no LoRA target modules known for a {kind!r} language model")
    config = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                        lora_dropout=recipe.lora_dropout, target_modules=LORA_TARGETS[kind],
                        modules_to_save=["multi_modal_projector"], bias="none")
    return get_peft_model(model, config)


def finish_student(model):
    """Merge LoRA into the weights (a plain transformers model again), eval mode."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.requires_grad_(False)
    return model.eval()


def trainable_parameters(model) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": sum(p.numel() for p in model.parameters())}


def check_pair(student, s_proc, teacher, t_proc, recipe: RecoveryRecipe) -> None:
    """The teacher must speak the student's tokens and, for L2, have its hidden size/depth."""
    s_tok, t_tok = s_proc.tokenizer, t_proc.tokenizer
    if s_tok.get_vocab() != t_tok.get_vocab() or \
            student.config.text_config.vocab_size != teacher.config.text_config.vocab_size:
        raise StudyError("teacher's tokenizer differs from the student's "
                         f"({len(t_tok)} vs {len(s_tok)} tokens): KD needs the same vocabulary")
    if recipe.gamma > 0:
        hs, ht = student.config.text_config.hidden_size, teacher.config.text_config.hidden_size
        if hs != ht:
            raise StudyError(f"hidden sizes differ (student {hs}, teacher {ht}): "
                             "L2 matching needs equal widths")
        ls = len(models.text_layers(student))
        lt = len(models.text_layers(teacher))
        deepest = -min(recipe.match_layers)
        if deepest > min(ls, lt):
            raise StudyError(f"recipe {recipe.name!r} matches the last {deepest} layers but "
                             f"the student has {ls} and the teacher {lt}")


# ---------------------------------------------------------------------------------------------
# Teacher cache


def teacher_fingerprint(teacher, path: str | os.PathLike | None = None) -> str:
    """Identity of a teacher: its directory's weight files (name, size, mtime) and config,
    or for an in-memory model a hash of its parameters."""
    h = hashlib.sha256()
    if path is not None:
        path = Path(path).resolve()
        h.update(str(path).encode())
        for f in sorted(path.iterdir()):
            if f.suffix in (".safetensors", ".json", ".bin"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for name, tensor in sorted(teacher.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "studylib" / "teacher-cache"))


class TeacherCache:
    """Teacher hidden states / top-k logits at the KD positions of each subset record.

    Files (safetensors): `hidden_L{-i}.safetensors` {values (N, H), offsets (n+1)} and
    `topk{k}.safetensors` {values (N, k), indices (N, k), offsets (n+1)}, N = KD positions
    of all records in subset order. Positions of a record are independent of batching
    (right padding + causal attention), so rows can be gathered for any batch.
    """

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.hidden: dict[int, dict[str, torch.Tensor]] = {}
        self.topk: dict[str, torch.Tensor] | None = None
        self.built: list[str] = []  # files computed by this process (others were hits)

    @staticmethod
    def key(fingerprint: str, subset: Subset, max_length: int) -> str:
        return f"{fingerprint}-{subset.hash[:16]}-len{max_length}"

    def ensure(self, teacher, collator: ConversationCollator, records: Sequence[dict],
               layers: Sequence[int], topk: int, batch_size: int = 32,
               progress: bool = True) -> TeacherCache:
        from safetensors.torch import load_file

        want = {f"hidden_L{i}.safetensors": i for i in layers}
        top_name = f"topk{topk}.safetensors" if topk else None
        missing_layers = [i for name, i in want.items() if not (self.dir / name).is_file()]
        need_top = bool(top_name) and not (self.dir / top_name).is_file()
        if missing_layers or need_top:
            self._build(teacher, collator, records, missing_layers, topk if need_top else 0,
                        batch_size, progress)
        for name, i in want.items():
            self.hidden[i] = load_file(str(self.dir / name))
        if top_name:
            self.topk = load_file(str(self.dir / top_name))
        return self

    @torch.no_grad()
    def _build(self, teacher, collator, records, layers, topk, batch_size, progress):
        from safetensors.torch import save_file
        from tqdm.auto import tqdm

        teacher.eval()
        device = next(teacher.parameters()).device
        tap = LayerTap(teacher, layers)
        hidden: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
        top_v, top_i, counts = [], [], []
        try:
            for start in tqdm(range(0, len(records), batch_size), desc="teacher cache",
                              disable=not progress):
                batch = collator(records[start:start + batch_size])
                labels = batch.pop("labels")
                batch = {k: v.to(device) for k, v in batch.items()}
                mask = losses.kd_mask(labels).to(device)
                out = teacher(**batch, use_cache=False, logits_to_keep=0)
                counts += mask.sum(1).tolist()
                for i in layers:
                    hidden[i].append(tap.outputs[i][mask].float().cpu())
                if topk:
                    v, ix = out.logits[mask].float().topk(min(topk, out.logits.shape[-1]), -1)
                    top_v.append(v.cpu())
                    top_i.append(ix.to(torch.int32).cpu())
        finally:
            tap.remove()
        offsets = torch.tensor([0] + counts, dtype=torch.long).cumsum(0)
        self.dir.mkdir(parents=True, exist_ok=True)

        def write(name: str, tensors: dict[str, torch.Tensor]) -> None:
            tmp = self.dir / f".{name}.{os.getpid()}.tmp"
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, self.dir / name)  # atomic: concurrent ranks never see half a file
            self.built.append(name)

        for i in layers:
            write(f"hidden_L{i}.safetensors", {"values": torch.cat(hidden[i]), "offsets": offsets})
        if topk:
            write(f"topk{topk}.safetensors", {"values": torch.cat(top_v),
                                              "indices": torch.cat(top_i), "offsets": offsets})

    @staticmethod
    def _rows(table: dict[str, torch.Tensor], key: str, positions: torch.Tensor) -> torch.Tensor:
        off = table["offsets"]
        return torch.cat([table[key][off[p]:off[p + 1]] for p in positions.tolist()])

    def hidden_rows(self, layer: int, positions: torch.Tensor) -> torch.Tensor:
        return self._rows(self.hidden[layer], "values", positions)

    def topk_rows(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.topk is not None
        return (self._rows(self.topk, "values", positions),
                self._rows(self.topk, "indices", positions))


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
                if self.logits_cached:
                    values, indices = self.cache.topk_rows(positions)
                    kd = losses.topk_forward_kl if r.logits == "kl" else losses.topk_reverse_kl
                    s = logits[mask]
                    parts["logits"] = kd(s, values.to(s.device), indices.to(s.device), r.tau)
                else:
                    kd = losses.forward_kl if r.logits == "kl" else losses.reverse_kl
                    parts["logits"] = kd(logits, t_logits, mask, r.tau)
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


def _load(spec, role: str):
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return spec[0], spec[1], None
    model, processor = models.load(spec)
    return model, processor, Path(spec)


def recover(student, teacher, recipe: str | Path | RecoveryRecipe,
            records: Sequence[dict[str, Any]] | None = None, data_fraction: float = 1.0,
            epochs: float | None = None, seed: int = 0, out: str | Path | None = None, *,
            subset_seed: int = 0, subset_file: str | Path | None = None,
            cache_dir: str | Path | None = None, use_cache: bool = True,
            max_steps: int | None = None, progress: bool = True,
            training_overrides: dict[str, Any] | None = None) -> RecoveryReport:
    """Train `student` (dir or (model, processor)) to recover towards `teacher` by `recipe`.

    Everything is validated before anything is written. In a DDP run every rank computes the
    same subset; rank 0 builds the teacher cache first (others then read it) and alone
    writes `out`: the merged checkpoint + `recovery_report.json` + `subset.json`.
    An in-memory student is trained in place.
    """
    from transformers import set_seed

    recipe = recipes.get(recipe)
    data_fraction = check_fraction(data_fraction)
    epochs = check_positive(recipe.epochs if epochs is None else epochs, "epochs")
    records = list(training_records() if records is None else records)
    subset = load_subset(subset_file, records) if subset_file else \
        select_subset(records, data_fraction, subset_seed)  # before loading: errors come first
    data_fraction = subset.fraction  # a reused subset file decides the fraction
    sub_records = [records[i] for i in subset.indices]
    s_model, s_proc, s_path = _load(student, "student")
    t_model, t_proc, t_path = _load(teacher, "teacher")
    check_pair(s_model, s_proc, t_model, t_proc, recipe)
    collator = ConversationCollator(s_proc)

    set_seed(seed)
    start = time.perf_counter()
    overrides = dict(training_overrides or {})
    if max_steps:
        overrides["max_steps"] = max_steps
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        overrides.setdefault("ddp_backend", "gloo")
    with tempfile.TemporaryDirectory() as tmp:
        from studylib.training import LossLog, training_arguments

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
                fp, subset, collator.max_length)
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
