"""Continuation plans: short training stages after a teacher's recipe (testbeds v3-v4, issue 26).

A plan is comma-separated stages `kind:steps[:key=value...]`, e.g.

    lookup:250:balanced=1:lr=2e-4,mix:300,open:150,mix:300:open=0.25

Kinds (`KINDS`): `lookup` (POPE and MME's lookup subtasks), `mix` (the instruct mix with
binding and lookup replayed), `gqa`, `mc` (SQA + MMMU families with letters), `binding`
(text-only "which option says X?"), `mme` (all MME subtasks), `yesno` (POPE, lookups and MME)
`open` (SQA/MMMU families answered by the option's text, `instructions.open_set`) and
`spatial` (where an object is, its size, left/right and above/below, as GQA and MME ask;
`instructions.spatial_set`) and `spatialyn` (the same, MME's yes/no form only).
No stage has descriptions unless `caption=` says so: a description as turn 1 lets every
later answer be read from the text (docs/testbed-recipe-search.md).

Keys: `lr`, `bs` (batch size), `turns`, `caption` (description rate), `balanced` (1: every
batch has as many "yes" as "no" answers, fed in order; 2: every *record* balanced, which
gives away each record's last yes/no answer, probe P04), `open`, `spatial` and
`spatialyn` (the share of a stage's records replaced by records of that kind), `w.<kind>` (a
mix weight, e.g. `w.gqa=1`), `occlusion` (the share of objects partly hidden in the stage's
images, `shapes.occluders`; default the benchmarks' world, `shapes.OCCLUSION`), `decoys` (1:
MME's scene-level "no" questions drawn against a decoy scene, as the benchmark draws them
since testbed v4, `mme.mme_pair`, as every plan of `PLANS` says; 0, the default, the
leaky form the v3 teachers' plans (`PLANS_V3`) were trained on) and `until`
(stop the stage once its skill is learned: the skill of the stage's kind, e.g. POPE accuracy
on the validation scenes of the stage's world for `lookup`, >= until, checked every `check`
steps; `steps` is then the most it may take). A skill's emergence varies with the
data draw (probes P28-P33: 400-800 steps for the lookup on toy-llava; P44 and P49: the
spatial stage's plateau), so a fixed length either misses it or saturates it.

Each stage is one cosine schedule of `steps` optimizer steps; stage i draws its records,
and seeds its Trainer, with `seed + 1000 * i`. The stages of `PLANS` (the committed
teachers') and `PLANS_V3` are the ones measured by docs/teacher_probe.py, which runs this
same loop from a committed teacher.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from studylib.errors import StudyError
from studylib.testbed import instructions, shapes
from studylib.training import LossLog, fit_stage

ZERO = instructions.ZERO_MIX
KINDS: dict[str, dict[str, float] | None] = {  # kind -> its question mix (None: own records)
    "lookup": instructions.LOOKUP_MIX,
    "mix": {**instructions.MIX, "binding": 1, "lookup": 1},
    "gqa": {**ZERO, "gqa": 1},
    "mc": {**ZERO, "sqa": 1, "mmmu": 1},
    "binding": None,
    "mme": {**ZERO, "mme": 1},
    "yesno": {**ZERO, "pope": 1, "lookup": 1, "mme": 2},
    "open": None,
    "spatial": None,
    "spatialyn": None,
}
OWN_RECORDS = {  # kinds with records of their own: builder, and the seed offset of a share
    "open": (instructions.open_set, 500),
    "spatial": (instructions.spatial_set, 600),
    "spatialyn": (functools.partial(instructions.spatial_set, short_share=0.0), 700),
}
# Stage settings unless a key says otherwise: issue 26's fact 3 (batch 16, lr 5e-4, no
# descriptions), four turns per record.
DEFAULTS: dict[str, float] = dict(lr=5e-4, bs=16, turns=4, caption=0.0, balanced=0, open=0.0,
                                  spatial=0.0, spatialyn=0.0, until=0.0, check=50, decoys=0)
STAGE_SEED_STRIDE = 1000


def data_seed(seed: int, index: int) -> int:
    """The data seed of a plan's stage `index` when the plan's seed is `seed`."""
    return seed + STAGE_SEED_STRIDE * index


def defaults() -> dict[str, float]:
    """DEFAULTS, and the share of objects hidden in the stage's images: the benchmarks'
    world (`shapes.OCCLUSION`, read when a plan is parsed) unless `occlusion=` says otherwise."""
    return {**DEFAULTS, "occlusion": shapes.OCCLUSION}


FINISH = "mme:300:lr=2e-4"  # v4's last stage, in the benchmarks' world (see PLANS)


def _v3(lookup: str, closing: str) -> str:
    """A v3 plan: every stage but the last in full view (`occlusion=0`), so that each skill
    is learned where it can be read, then the closing mix in the benchmarks' world."""
    middle = ["mix:300", "open:150", "mix:1500:open=0.1:spatial=0.4", "mme:1500"]
    return ",".join([f"{stage}:occlusion=0" for stage in [lookup, *middle]] + [closing])


def _v4(v3: str) -> str:
    """A v4 plan: the v3 plan and `FINISH`, with MME's "no" questions drawn against decoy
    scenes."""
    return ",".join(f"{stage}:decoys=1" for stage in [*v3.split(","), FINISH])


# The plans of testbed v3 per architecture (docs/testbed-recipe-search.md): a lookup stage
# that ends once the lookup is learned (its emergence moves with the draw: 250-650 steps),
# the mix, the open SQA/MMMU stage, 1,500 steps of the mix with open and spatial questions
# (where an object is, how large, how two lie), 1,500 of MME's yes/no checks (a gate on
# them was timed by noise, conclusion 19), and the spatial mix again in the occluded world.
# Measured from the committed teachers: P60-P63 in full view; P64-P67 in the occluded world.
PLANS_V3: dict[str, str] = {
    "toy-bunny": _v3("lookup:1000:balanced=1:lr=2e-4:until=85",
                     "mix:1500:open=0.1:spatial=0.4"),  # P63, P67
    "toy-llava": _v3("lookup:1000:balanced=1:until=85",
                     "mix:1500:open=0.1:spatial=0.4"),  # P60, P62, P64, P65
    "toy-internvl": _v3("lookup:1600:balanced=1:lr=2e-4:until=85",
                        "mix:1500:open=0.1:spatial=0.4:w.lookup=2"),  # P61, P66
}
# Testbed v4 (the committed teachers): the same stages on the balanced MME
# (docs/testbed-recipe-search.md, "MME questions that answer themselves"), after the
# `shallow` recipe (`teacher_recipes.TEACHER_RECIPES`), and a gentle MME stage to finish: the
# plan's 1,500-step `mme` stage at lr 5e-4 left toy-internvl's MME at its guesser (MME-P
# 760, MME-C 272 on the test suite); 300 more steps at lr 2e-4 after the closing mix took it
# to 838 / 370 and raised the other two by 93-98 MME-P points (P80, "Testbed v4 adopted").
PLANS: dict[str, str] = {arch: _v4(text) for arch, text in PLANS_V3.items()}
NAMED = {"v3": PLANS_V3, "v4": PLANS}  # `studylib teacher --plan v3|v4`
PLAN_SEED = 21  # the data seed of `studylib teacher --plan v3|v4` (most probes ran on 7 and 21)


def parse(plan: str) -> list[dict[str, Any]]:
    """The stages of a plan string, each {"kind", "steps", "mix", **defaults()}; a malformed
    plan raises StudyError naming the part at fault."""
    stages = []
    for part in plan.split(","):
        kind, *rest = part.strip().split(":")
        if kind not in KINDS:
            raise StudyError(f"unknown stage kind {kind!r} in {part!r}; choose from "
                             f"{', '.join(KINDS)}")
        if not rest or not rest[0].isdigit() or int(rest[0]) < 1:
            raise StudyError(f"stage {part!r} needs a positive step count: {kind}:STEPS")
        known = defaults()
        stage = {"kind": kind, "steps": int(rest[0]), **known, "mix": dict(KINDS[kind] or {})}
        for kv in rest[1:]:
            key, _, value = kv.partition("=")
            try:
                number = float(value)
            except ValueError:
                raise StudyError(f"stage {part!r}: {kv!r} is not key=number") from None
            if key.startswith("w.") and key[2:] in instructions.MIX_KINDS:
                stage["mix"][key[2:]] = number
            elif key in known:
                stage[key] = type(known[key])(number)
            else:
                raise StudyError(f"stage {part!r}: unknown key {key!r}; use "
                                 f"{', '.join(known)} or w.<{'|'.join(instructions.MIX_KINDS)}>")
        shares = sum(stage[k] for k in OWN_RECORDS)
        if stage["balanced"] not in (0, 1, 2) or not 0 <= shares < 1:
            raise StudyError(f"stage {part!r}: balanced is 0, 1 or 2, and "
                             f"{' + '.join(OWN_RECORDS)} in [0, 1)")
        if stage["decoys"] not in (0, 1):
            raise StudyError(f"stage {part!r}: decoys is 0 or 1")
        if not 0 <= stage["until"] <= 100 or stage["check"] < 1:
            raise StudyError(f"stage {part!r}: until is a POPE accuracy in [0, 100], check >= 1")
        if not 0 <= stage["occlusion"] < 1 or not shapes.whole_percent(stage["occlusion"]):
            raise StudyError(f"stage {part!r}: occlusion is a share of objects in [0, 1), "
                             "in whole percent (the image path names it)")
        stages.append(stage)
    return stages


def yes_no_balance(record: dict[str, Any]) -> int:
    """#yes - #no answers of a record's yes/no turns."""
    turns = record["conversations"]
    return sum((a["value"] == "yes") - (a["value"] == "no")
               for q, a in zip(turns[0::2], turns[1::2], strict=True)
               if q["value"].endswith(shapes.YES_NO))


def stage_records(stage: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """steps * bs records for the stage, in the order the Trainer is to read them when
    `balanced` is 1."""
    n = stage["steps"] * stage["bs"]
    if stage["kind"] == "binding":
        return instructions.binding_set(n, seed=seed)
    if stage["kind"] in OWN_RECORDS:
        return OWN_RECORDS[stage["kind"]][0](n, stage["turns"], seed,
                                             occlusion=stage["occlusion"])
    shares = {k: round(n * stage[k]) for k in OWN_RECORDS if stage[k]}
    if shares:  # a share of the records replaced by records of those kinds
        rest = stage_records({**stage, **dict.fromkeys(shares, 0.0), "steps": 1,
                              "bs": n - sum(shares.values())}, seed)
        mixed = rest + [r for k, m in shares.items()
                        for r in OWN_RECORDS[k][0](m, stage["turns"], seed + OWN_RECORDS[k][1],
                                                   occlusion=stage["occlusion"])]
        random.Random(seed).shuffle(mixed)
        return mixed
    records, chunk = [], seed
    while len(records) < n:  # balanced=2: draw more scenes until n balanced records
        batch = instructions.instruction_set(n, turns=stage["turns"], seed=chunk,
                                             caption_rate=stage["caption"], mix=stage["mix"],
                                             occlusion=stage["occlusion"],
                                             decoys=bool(stage["decoys"]))
        records += [r for r in batch if stage["balanced"] != 2 or yes_no_balance(r) == 0]
        chunk += 100_000
    random.Random(seed).shuffle(records)  # balanced draws are scene-ordered
    if stage["balanced"] == 1:
        more = instructions.instruction_set(n // 2, turns=stage["turns"], seed=chunk,
                                            caption_rate=stage["caption"], mix=stage["mix"],
                                            occlusion=stage["occlusion"],
                                            decoys=bool(stage["decoys"]))
        return balanced_batches(records + more, stage["bs"], n, seed)
    return records[:n]


def balanced_batches(records: list[dict], bs: int, n: int, seed: int) -> list[dict]:
    """n records in batches of bs with as many "yes" as "no" answers each: units of one
    record with balance 0 or two with opposite balances, packed into batches, batch order
    shuffled (the Trainer then reads them in order)."""
    by_d: dict[int, list[dict]] = {}
    for r in records:
        by_d.setdefault(yes_no_balance(r), []).append(r)
    units = [[r] for r in by_d.pop(0, [])]
    for d in sorted(k for k in by_d if k > 0):
        units += [[a, b] for a, b in zip(by_d[d], by_d.get(-d, []), strict=False)]
    rng = random.Random(seed)
    rng.shuffle(units)
    pairs, singles = [u for u in units if len(u) == 2], [u for u in units if len(u) == 1]
    k = round(bs * 2 * len(pairs) / (2 * len(pairs) + len(singles)) / 2)  # pairs per batch
    batches = []
    while len(batches) * bs < n:
        take = max(min(k, len(pairs)), (bs - len(singles) + 1) // 2)
        if take > len(pairs) or take > bs // 2:
            raise StudyError("not enough records to balance the batches; draw more")
        batch = [r for _ in range(take) for r in pairs.pop()]
        batch += [singles.pop()[0] for _ in range(bs - len(batch))]
        rng.shuffle(batch)
        batches.append(batch)
    return [r for b in batches for r in b][:n]


def composition(records: list[dict]) -> dict[str, float]:
    """Answer turns by format (yes/no, short answer, letter, caption) and the yes share."""
    counts = {"yes/no": 0, "short": 0, "letter": 0, "caption": 0, "yes": 0}
    for r in records:
        turns = r["conversations"]
        for q, a in zip(turns[0::2], turns[1::2], strict=True):
            kind = ("yes/no" if q["value"].endswith(shapes.YES_NO) else
                    "letter" if q["value"].endswith(shapes.LETTER) else
                    "short" if q["value"].endswith(shapes.SHORT_ANSWER) else "caption")
            counts[kind] += 1
            counts["yes"] += a["value"] == "yes"
    counts["yes_share"] = round(counts["yes"] / max(1, counts["yes/no"]), 3)
    return counts


def require_skill(stages: list[dict[str, Any]], skills: Mapping[str, Callable] | None) -> None:
    """Refuse, before any training, an `until` stage whose kind has no skill to check."""
    for s in stages:
        if s["until"] and s["kind"] not in (skills or {}):
            raise StudyError(f"a {s['kind']} stage with until= needs a skill to check; "
                             f"skills are given for: {', '.join(skills or {}) or 'none'}")


def _gate(stage: dict[str, Any], skill: Callable, passed: list):
    """A Trainer callback ending the stage once `skill(model, occlusion)` >= the stage's
    `until`: the skill read on the scenes of the stage's own world."""
    from transformers import TrainerCallback

    class _Until(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % stage["check"] == 0:
                was_training = model.training
                value = skill(model, stage["occlusion"])
                model.train(was_training)
                print(f"[until] step {state.global_step}: {value:.1f} "
                      f"(until {stage['until']:g})", flush=True)
                if value >= stage["until"]:
                    passed.append({"step": state.global_step, "value": value})
                    control.should_training_stop = True

    return _Until()


def run(model, collator, losses: LossLog, stages: list[dict[str, Any]], seed: int, *,
        curves=None, skills: Mapping[str, Callable] | None = None, step_offset: int = 0,
        bf16: bool = False, logging_steps: int = 10) -> list[dict[str, Any]]:
    """Train `model` through the stages in turn (vision tower frozen by the caller); one log
    entry per stage: its settings, data seed, record count, composition, steps and wall s
    (and, for an `until` stage, "passed": the step and value that ended it, or None).
    `curves` (a `teachers.Curves`) scores the model along the way; `skills[kind](model,
    occlusion)` is the gate of that kind's `until` stages (`evaluation.evaluate.SKILLS`)."""
    require_skill(stages, skills)
    log, step = [], step_offset
    for i, stage in enumerate(stages):
        stage_seed = data_seed(seed, i)
        records = stage_records(stage, stage_seed)
        t0 = time.perf_counter()
        callbacks = [curves.callback(stage["kind"], step)] if curves is not None else []
        passed: list[dict[str, float]] = []
        if stage["until"]:
            callbacks.append(_gate(stage, skills[stage["kind"]], passed))
        out = fit_stage(model, records, collator, losses, seed=stage_seed, epochs=1,
                        batch_size=stage["bs"], lr=stage["lr"], bf16=bf16,
                        logging_steps=logging_steps, step_offset=step, callbacks=callbacks,
                        in_order=stage["balanced"] == 1)
        step += out.global_step
        log.append({**stage, "data_seed": stage_seed, "records": len(records),
                    "composition": composition(records), "steps_done": out.global_step,
                    "wall_s": round(time.perf_counter() - t0, 1),
                    **({"passed": passed[0] if passed else None} if stage["until"] else {})})
        print(f"[stage] {log[-1]}", flush=True)
    return log
