"""Teacher recipes: the stages' hyperparameters per size, and the training data each draws.

A teacher's data is a pure function of its recipe and seed (`stage_data`), and of its plan
and plan seed (`plan_data_sha256`): `training_summary.json` records their sha256, and
`tests/testbed/test_teachers.py` checks that the code still draws what a committed teacher
saw. `studylib.testbed.teachers` trains on them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from studylib.errors import StudyError
from studylib.testbed import instructions
from studylib.testbed import plan as plans

# Teacher recipe per size (`toy.ARCHS`). Each stage's keys: n_images (n for binding),
# epochs, batch_size, lr; lookup and instruct also turns, caption_rate and mix (question
# kinds, merged into `instructions.MIX`). The recipe is the first part of a teacher's
# training; its plan (`plan.PLANS`) follows. The descriptions in its lookup and instruct
# stages (caption_rate 0.5) keep the yes/no lookup from being learned there (README, "The
# teachers"); the plan's stages, without them, teach it.

# The dtype teachers train in on every machine: float32. Measured on one toy-llava training
# step (`studylib.testbed.speed.DTYPE_COST`, README "CPU kinds"): bf16 autocast costs 7.5x
# float32 on an AVX2 CPU, and 1.2-1.3x on the AVX-512-bf16 CPU the v1-v3 teachers were
# trained on (where earlier notes had it 1.7-1.9x faster), so float32 is the faster dtype on
# both kinds. The `deep` recipe (testbeds v1-v3) keeps the bfloat16 they were trained in;
# `shallow` (testbed v4, the committed teachers) uses TRAINING_DTYPE.
TRAINING_DTYPE = "float32"
DTYPES = ("float32", "bfloat16")
TEACHER_RECIPES: dict[str, dict[str, Any]] = {
    "deep": dict(
        dtype="bfloat16", logging_steps=10, curve_every=200, curve_limit=40,
        vision=dict(n_images=4000, epochs=2, batch_size=64, lr=2e-3),
        align=dict(n_images=8000, epochs=1, batch_size=16, lr=5e-4),
        binding=dict(n=9600, epochs=1, batch_size=16, lr=3e-4),
        lookup=dict(n_images=8000, turns=4, epochs=1, batch_size=16, lr=5e-4,
                    caption_rate=0.5, mix=instructions.LOOKUP_MIX),
        instruct=dict(n_images=12000, turns=4, epochs=2, batch_size=8, lr=5e-4,
                      caption_rate=0.5, mix={"binding": 1, "lookup": 1})),
    "micro": dict(
        dtype=TRAINING_DTYPE, logging_steps=2, curve_every=0, curve_limit=8,
        vision=dict(n_images=256, epochs=1, batch_size=64, lr=2e-3),
        align=dict(n_images=256, epochs=1, batch_size=16, lr=3e-3),
        binding=dict(n=128, epochs=1, batch_size=16, lr=3e-3),
        lookup=dict(n_images=128, turns=3, epochs=1, batch_size=16, lr=3e-3,
                    caption_rate=0.5, mix=instructions.LOOKUP_MIX),
        instruct=dict(n_images=600, turns=3, epochs=1, batch_size=16, lr=3e-3,
                      caption_rate=1.0, mix={"binding": 1, "lookup": 1})),
}
# Testbed v4 (`toy.ARCHS`' shallow size): the deep recipe in TRAINING_DTYPE, with MME's
# "no" questions drawn against decoy scenes (`mme.mme_pair`), as the benchmark does.
TEACHER_RECIPES["shallow"] = {**copy.deepcopy(TEACHER_RECIPES["deep"]),
                              "dtype": TRAINING_DTYPE, "decoys": True}


STAGES = ("vision", "align", "binding", "lookup", "instruct")


def resolve(size: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The size's recipe with `overrides` merged in (a stage's dict is merged key by key)."""
    if size not in TEACHER_RECIPES:
        raise StudyError(f"unknown size {size!r}; choose from {', '.join(TEACHER_RECIPES)}")
    recipe = copy.deepcopy(TEACHER_RECIPES[size])
    for key, value in overrides.items():
        if key not in recipe:
            raise StudyError(f"unknown recipe key {key!r}; choose from {', '.join(recipe)}")
        if isinstance(recipe[key], dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    if recipe["dtype"] not in DTYPES:
        raise StudyError(f"unknown dtype {recipe['dtype']!r}; choose from {', '.join(DTYPES)}")
    return recipe


def stage_data(recipe: dict[str, Any], seed: int) -> dict[str, list[dict[str, Any]]]:
    """The LLM stages' training records, each a pure function of the recipe and seed. A
    recipe without "decoys" (v1-v3) draws MME's "no" questions in the leaky form."""
    decoys = recipe.get("decoys", False)

    def conversations(stage: str, seed: int):
        hp = recipe[stage]
        return instructions.instruction_set(hp["n_images"], turns=hp["turns"], seed=seed,
                                            caption_rate=hp["caption_rate"], mix=hp["mix"],
                                            decoys=decoys)

    return {
        "align": instructions.instruction_set(recipe["align"]["n_images"], turns=1, seed=seed,
                                              caption_rate=1.0, decoys=decoys),
        "binding": instructions.binding_set(recipe["binding"]["n"], seed=seed),
        "lookup": conversations("lookup", seed),
        "instruct": conversations("instruct", seed),
    }


def data_sha256(data: dict[str, list[dict[str, Any]]]) -> str:
    """sha256 of every LLM stage's training records (`stage_data`'s output): a check, without
    training, that the code still generates the data a committed teacher was trained on."""
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_data_sha256(plan: str, seed: int) -> str:
    """sha256 of a plan's training records, every stage's as `plan.run` draws them with data
    seed `seed` (an `until` stage's whole draw, however early it stopped)."""
    stages = plans.parse(plan)
    return data_sha256({f"{i} {stage['kind']}": plans.stage_records(stage, plans.data_seed(seed, i))
                        for i, stage in enumerate(stages)})
