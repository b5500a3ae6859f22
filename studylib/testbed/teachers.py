"""Training on the Hugging Face stack: teachers from scratch (`studylib teacher`).

A teacher is made in stages, as LLaVA is, each with its own data:

0. `vision`: a vision encoder pretrained on its own (`studylib.testbed.vision_pretrain`,
   per-cell shape/colour/size) and then frozen, as LLaVA starts from CLIP;
1. `align`: projector and LLM trained on cell-by-cell descriptions only (dense grounding,
   like LLaVA's caption pretraining);
2. `binding`: text-only "which option says X?" questions, one per sequence. At this size
   mapping an option to its letter is itself a barrier: mixed into everything else it stayed
   at chance for 900 steps; concentrated, it is learned in a few hundred (README, "Testbed");
3. `lookup`: conversations of descriptions and yes/no questions answered by one lookup
   (POPE's "Is there a triangle?", MME's existence, colour and position). In the full mix
   the yes/no answers stayed at a constant "no" (POPE F1 0 after 750 steps): this skill too
   needs its own stage;
4. `instruct`: conversations with questions of all six benchmark families, the binding and
   lookup questions replayed among them so that they are not forgotten.

The loss is cross-entropy on answer tokens only. The LLM stages train in the recipe's
`dtype`, the same on every machine, so that a teacher is one recipe everywhere
(TRAINING_DTYPE says which and why). Training goes through `transformers.Trainer`, so
`accelerate launch` / `torchrun` runs the same code on several GPUs.

Every `curve_every` optimizer steps of the LLM stages the teacher is scored on a fixed
subset of the benchmarks' validation scenes (`suite.benchmark(split="val")`, never the test
items); the curves go into `training_summary.json` and chapter 00 draws them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from studylib import machine, models
from studylib.errors import StudyError
from studylib.testbed import fingerprint, toy
from studylib.testbed import plan as plans
from studylib.testbed.data import ConversationCollator
from studylib.testbed.teacher_recipes import (
    STAGES,
    TRAINING_DTYPE,
    data_sha256,
    plan_data_sha256,
    resolve,
    stage_data,
)
from studylib.testbed.vision_pretrain import pretrain_vision
from studylib.training import LossLog, fit_stage


class Curves:
    """Learning curves: validation scores every `every` optimizer steps (0: never).

    `evaluate(model, processor, limit=..., split="val", progress=False)` scores the model;
    each point is {"stage", "step" (counted across the LLM stages), benchmark: headline
    score, "<benchmark> (letter)": multiple choice scored by generated letter, "AVG", and
    each of `probes` (name -> `probe(model, processor)`, e.g. option-lookup accuracy)}.
    Scoring does not touch the training RNG (greedy decoding, seeded bootstrap), so a run
    with curves trains the same weights as one without.
    """

    def __init__(self, evaluate: Callable | None, processor, every: int, limit: int,
                 probes: Mapping[str, Callable] | None = None):
        self.evaluate, self.processor = evaluate, processor
        self.every, self.limit = every, limit
        self.probes = dict(probes or {})
        self.points: list[dict[str, Any]] = []

    def record(self, model, stage: str, step: int) -> None:
        if self.evaluate is None or not self.every:
            return
        was_training = model.training
        report = self.evaluate(model, self.processor, limit=self.limit, split="val",
                               progress=False)
        letters = report.scores[report.scores.metric == "letter"]
        probed = {name: probe(model, self.processor) for name, probe in self.probes.items()}
        model.train(was_training)
        summary = report.summary()
        self.points.append({"stage": stage, "step": step, **report.headline(),
                            **{f"{b} (letter)": float(v)
                               for b, v in zip(letters.benchmark, letters.value, strict=True)},
                            "AVG": summary.get("AVG", math.nan), **probed})
        scores = "  ".join(f"{k} {v:.1f}" for k, v in self.points[-1].items()
                           if k not in ("stage", "step"))
        print(f"[curve] {stage} step {step}: {scores}", flush=True)

    def callback(self, stage: str, step_offset: int):
        from transformers import TrainerCallback

        curves = self

        class _Curve(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                if curves.every and state.global_step % curves.every == 0:
                    curves.record(model, stage, step_offset + state.global_step)

            def on_train_end(self, args, state, control, model=None, **kwargs):
                if curves.every and state.global_step % curves.every:  # the stage's end
                    curves.record(model, stage, step_offset + state.global_step)

        return _Curve()


def train_teacher(arch: str, out: str | Path | None, size: str = toy.TEACHER_SIZE, seed: int = 0,
                  evaluate: Callable | None = None, stop_after: str | None = None,
                  probes: Mapping[str, Callable] | None = None, plan: str | None = None,
                  plan_seed: int = 0, skills: Mapping[str, Callable] | None = None,
                  **recipe_overrides) -> dict[str, Any]:
    """Train a toy MLLM from scratch (vision, align, binding, instruct) and save it to `out`
    (None: save nothing, return the summary).

    Deterministic for a given seed on one machine (`studylib.machine.signature`: the CPU, its
    kernels, torch and the thread count, recorded in the summary as "machine"). Each stage's
    prefix (sha256 and fingerprint, `studylib.testbed.fingerprint`) is recorded in
    "prefix_checksums". With `stop_after` (one of STAGES), training ends
    `fingerprint.CHECKSUM_STEP` steps into that stage, saves nothing, and returns only
    `{"prefix_checksums": ...}`, to compare with the full run's. `recipe_overrides` change
    the size's recipe (`instruct=dict(lr=1e-3)`). `plan` (a `studylib.testbed.plan` string,
    e.g. `plan.PLANS[arch]`) adds its stages after the recipe's, with data seed `plan_seed`,
    in TRAINING_DTYPE, as `continue_teacher` adds them to a saved teacher; `skills[kind](model,
    processor)` gates its `until=` stages of that kind (the CLI passes `evaluate.SKILLS`).

    `evaluate(model, processor, ...)` (the CLI passes `studylib.evaluation.evaluate.evaluate`;
    the testbed sits below evaluation) scores the learning curves and the trained teacher;
    `probes` add skills to the curves (`Curves`; the CLI adds option-lookup accuracy).
    """
    from transformers import set_seed

    if stop_after is not None and stop_after not in STAGES:
        raise StudyError(f"stop_after must be one of {STAGES}, got {stop_after!r}")
    recipe = resolve(size, recipe_overrides)
    stages = plans.parse(plan) if plan else []  # a bad plan fails before any training
    plans.require_skill(stages, skills)
    checksums: dict[str, Any] = {}

    def checksum(stage: str):
        return fingerprint.prefix_callback(stage, checksums, stop=stage == stop_after)

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
    collator = ConversationCollator(processor, config=model.config)
    losses = LossLog()
    curves = Curves(evaluate, processor, recipe["curve_every"], recipe["curve_limit"], probes)
    data = stage_data(recipe, seed)
    llm_start = time.perf_counter()
    steps: dict[str, int] = {}
    stage_wall: dict[str, float] = {}
    for stage, records in data.items():
        t0, offset = time.perf_counter(), sum(steps.values())
        hp = recipe[stage]
        steps[stage] = fit_stage(model, records, collator, losses, seed=seed, epochs=hp["epochs"],
                            batch_size=hp["batch_size"], lr=hp["lr"],
                            bf16=recipe["dtype"] == "bfloat16",
                            logging_steps=recipe["logging_steps"], step_offset=offset,
                            callbacks=[checksum(stage), curves.callback(stage, offset)]
                            ).global_step
        stage_wall[stage] = round(time.perf_counter() - t0, 1)
        if stop_after == stage:
            return {"prefix_checksums": checksums}
    llm_wall = time.perf_counter() - llm_start  # the recipe's stages (tokens_per_s)
    plan_log = plans.run(model, collator, losses, stages, plan_seed, curves=curves,
                        skills=_bind(skills, processor),
                        step_offset=sum(steps.values()), bf16=TRAINING_DTYPE == "bfloat16",
                        logging_steps=recipe["logging_steps"])
    wall = time.perf_counter() - start
    model.eval()
    tokens = sum(_count_tokens(collator, records) * recipe[stage]["epochs"]
                 for stage, records in data.items())
    summary: dict[str, Any] = {
        "arch": arch,
        "size": size,
        "seed": seed,
        "recipe": recipe,
        "vision_pretraining": {"cell_accuracy": vision_probe,
                               "wall_time_s": round(vision_wall, 1)},
        "steps": steps,
        "stage_wall_time_s": stage_wall,
        "tokens": tokens,
        "wall_time_s": round(wall, 1),
        "llm_stage_wall_time_s": round(llm_wall, 1),
        "tokens_per_s": round(tokens / llm_wall),
        "machine": machine.signature(),
        "final_loss": losses.rows[-1]["loss"] if losses.rows else math.nan,
        "prefix_checksums": checksums,
        "data_sha256": data_sha256(data),
        **({"plans": [_plan_summary(plan, plan_seed, plan_log)]} if plan else {}),
        "loss_log": losses.rows,
        "curves": curves.points,
        "parameters": models.parameter_counts(model),
    }
    return _finish(model, processor, summary, evaluate, out)


def continue_teacher(source: str | Path, out: str | Path | None, plan: str, seed: int = 0,
                     evaluate: Callable | None = None,
                     probes: Mapping[str, Callable] | None = None,
                     skills: Mapping[str, Callable] | None = None) -> dict[str, Any]:
    """A saved teacher trained further through `plan`'s stages (data seed `seed`, vision
    tower frozen, TRAINING_DTYPE), saved to `out` (None: save nothing) with its source's
    training summary extended: "continued_from", "plans" (each plan's stage log, data sha256
    and machine), the curves and loss log continued past the source's last step, and a new
    "eval". "machine" stays the source's: it is the machine of the recipe's prefix checks.

    On the machine that trained `source`, `train_teacher(..., plan=plan, plan_seed=seed)`
    trains the same weights from scratch.
    """
    stages = plans.parse(plan)
    source_summary = read_summary(source)
    recipe = source_summary["recipe"]
    model, processor = models.load(source)
    model.model.vision_tower.requires_grad_(False)
    collator = ConversationCollator(processor, config=model.config)
    losses = LossLog()
    curves = Curves(evaluate, processor, recipe["curve_every"], recipe["curve_limit"], probes)
    start = time.perf_counter()
    earlier = source_summary.get("plans", [])
    offset = sum(source_summary["steps"].values()) + sum(p["steps"] for p in earlier)
    log = plans.run(model, collator, losses, stages, seed, curves=curves,
                   skills=_bind(skills, processor), step_offset=offset,
                   bf16=TRAINING_DTYPE == "bfloat16", logging_steps=recipe["logging_steps"])
    model.eval()
    summary = {**source_summary,
               "continued_from": {"path": str(source),
                                  "wall_time_s": source_summary["wall_time_s"],
                                  "eval": source_summary.get("eval")},
               "plans": [*earlier, _plan_summary(plan, seed, log)],
               "wall_time_s": round(source_summary["wall_time_s"]
                                    + time.perf_counter() - start, 1),
               "final_loss": losses.rows[-1]["loss"] if losses.rows else math.nan,
               "loss_log": source_summary["loss_log"] + losses.rows,
               "curves": source_summary["curves"] + curves.points}
    return _finish(model, processor, summary, evaluate, out)


def retrain_arguments(summary: dict[str, Any]) -> dict[str, Any]:
    """The `train_teacher` arguments that retrain the teacher of `summary` from scratch:
    size, seed, and its plan (a teacher trained with one, or continued through one:
    `continue_teacher` trains the same weights). A teacher continued through several plans
    retrains as one plan, their stages joined, when each later plan's data seed is the one its
    first stage would have drawn as the next stage of the plans before it
    (`plan.data_seed(seed, stages so far)`, e.g. `--plan-seed 6021` after a six-stage plan of
    seed 21); any other seed has no such arguments."""
    done = summary.get("plans", [])
    if not done:
        return {"size": summary["size"], "seed": summary["seed"]}
    text, seed = done[0]["text"], done[0]["seed"]
    for later in done[1:]:
        following = plans.data_seed(seed, len(plans.parse(text)))
        if later["seed"] != following:
            raise StudyError(f"this teacher was continued through a plan of data seed "
                             f"{later['seed']}, not {following}, the next stage's: retrain "
                             "its source and continue it (studylib teacher --from)")
        text = f"{text},{later['text']}"
    return {"size": summary["size"], "seed": summary["seed"], "plan": text, "plan_seed": seed}


def machines(summary: dict[str, Any]) -> list[dict[str, object]]:
    """The machine of every part of a teacher's training: the recipe's, then each plan's."""
    return [summary["machine"], *(p["machine"] for p in summary.get("plans", []))]


def _finish(model, processor, summary: dict[str, Any], evaluate: Callable | None,
            out: str | Path | None) -> dict[str, Any]:
    """Score the trained teacher on the test split (when `evaluate` is given) and save it
    with its summary (when `out` is)."""
    if evaluate is not None:
        report = evaluate(model, processor)
        summary["eval"] = report.summary()
        summary["eval_wall_time_s"] = round(report.wall_time, 1)
    if out is not None:
        models.save(model, processor, out, extra={"training_summary.json": summary},
                    command="teacher")
    return summary


def _bind(skills: Mapping[str, Callable] | None, processor) -> dict[str, Callable]:
    """Each skill(model, processor, occlusion=) as skill(model, occlusion), the form
    `plan.run` calls."""
    return {kind: (lambda model, occlusion, f=skill: f(model, processor, occlusion=occlusion))
            for kind, skill in (skills or {}).items()}


def _plan_summary(plan: str, seed: int, log: list[dict[str, Any]]) -> dict[str, Any]:
    return {"text": plan, "seed": seed, "dtype": TRAINING_DTYPE, "stages": log,
            "steps": sum(s["steps_done"] for s in log),
            "wall_time_s": round(sum(s["wall_s"] for s in log), 1),
            "data_sha256": plan_data_sha256(plan, seed), "machine": machine.signature()}


def _count_tokens(collator: ConversationCollator, records) -> int:
    return sum(len(collator.encode(r)[0]) for r in records)


def stage_steps(summary: dict[str, Any]) -> list[tuple[str, int, float | None]]:
    """(stage, optimizer steps, wall s) of every LLM stage in training order: the recipe's,
    then each plan's (named "+<kind>", e.g. "+lookup")."""
    walls = summary.get("stage_wall_time_s", {})
    rows = [(stage, steps, walls.get(stage)) for stage, steps in summary.get("steps", {}).items()]
    for plan in summary.get("plans", []):
        rows += [(f"+{s['kind']}", s["steps_done"], s["wall_s"]) for s in plan["stages"]]
    return rows


def read_summary(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "training_summary.json"
    if not f.is_file():
        raise StudyError(f"no training_summary.json in {path}")
    return json.loads(f.read_text())
