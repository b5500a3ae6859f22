"""The instruction-tuning set: LLaVA-format conversations over training scenes, and the calibration sample drawn from it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from studylib.testbed.mme import decoy_scene, mme_pair
from studylib.testbed.questions import (
    GQA_FAMILIES,
    MMMU_FAMILIES,
    SQA_FAMILIES,
    gqa_position,
    gqa_size,
    option_lookup,
    pope_item,
)
from studylib.testbed.shapes import (
    LETTER,
    LETTERS,
    MME_C_SUBTASKS,
    MME_P_SUBTASKS,
    POPE_SPLITS,
    SHORT_ANSWER,
    TRAIN_SEED_BASE,
    YES_NO,
    Scene,
    image_name,
    training_scene,
)

# How often each kind of question is drawn for an instruction turn. "binding" is the text-only
# "which option says X?" warm-up (`questions.option_lookup`); "lookup" the yes/no questions
# answered by one lookup (MME's LOOKUP_SUBTASKS). Teacher training concentrates each in a
# stage of its own, then replays them in the full mix so that they are not forgotten. The
# committed teachers' recipes record MIX, so a new kind joins MIX_KINDS only (a plan's
# `w.<kind>`): "mmerest", MME's subtasks other than the lookups (probe P62).
MIX = {"gqa": 4, "sqa": 2, "pope": 2, "mme": 4, "mmmu": 2, "binding": 0, "lookup": 0}
MIX_KINDS = (*MIX, "mmerest")
LOOKUP_SUBTASKS = ("existence", "color", "position")
MME_SUBTASKS = MME_P_SUBTASKS + MME_C_SUBTASKS
SUBTASKS = {"mme": MME_SUBTASKS, "lookup": LOOKUP_SUBTASKS,  # the MME subtasks of a kind
            "mmerest": tuple(s for s in MME_SUBTASKS if s not in LOOKUP_SUBTASKS)}
ZERO_MIX = dict.fromkeys(MIX, 0)  # a mix of none: add the kinds a stage asks
LOOKUP_MIX = {**ZERO_MIX, "pope": 1, "lookup": 2}  # the lookup stage's (teachers, plans)


def _any_question(scene: Scene, rng: random.Random, mix: dict[str, float],
                  decoys: bool) -> tuple[str, str]:
    """One training question of a random family, in its benchmark's prompt format; MME's
    "no" questions drawn against a decoy scene when `decoys` (`mme.mme_pair`)."""
    while True:
        kind = rng.choices(list(mix), list(mix.values()))[0]
        if kind == "binding":
            qa, suffix = option_lookup(rng), LETTER
        elif kind == "gqa":
            qa, suffix = rng.choice(GQA_FAMILIES)(scene, rng), SHORT_ANSWER
        elif kind == "sqa":
            qa, suffix = rng.choice(SQA_FAMILIES)(scene, rng), LETTER
        elif kind == "mmmu":
            qa, suffix = rng.choice(MMMU_FAMILIES)(scene, rng), LETTER
        elif kind == "pope":
            split = rng.choice(POPE_SPLITS)
            qa, suffix = pope_item(scene, rng, split, rng.random() < 0.5), YES_NO
        else:
            subtask = rng.choice(SUBTASKS[kind])
            pair = mme_pair(scene, rng, subtask, decoy_scene(rng) if decoys else None)
            if pair is None:
                continue
            answer = rng.choice(("yes", "no"))
            qa, suffix = (pair[0] if answer == "yes" else pair[1], answer, {}), YES_NO
        if qa is not None:
            return f"{qa[0]}\n{suffix}", qa[1]


DESCRIBE = "Describe the image cell by cell."


def caption(scene: Scene) -> str:
    """The nine grid cells in reading order, "empty" or the object there: dense visual
    supervision (like LLaVA's caption data) whose i-th part describes image patch i."""
    at = {(o.row, o.col): o for o in scene.objects}
    parts = []
    for r in range(3):
        for c in range(3):
            o = at.get((r, c))
            parts.append(f"{o.size} {o.color} {o.shape}" if o else "empty")
    return " ; ".join(parts)


def instruction_set(n_images: int, turns: int = 3, seed: int = 0, caption_rate: float = 0.5,
                    mix: dict[str, float] | None = None, occlusion: float = 0.0,
                    decoys: bool = True) -> list[dict[str, Any]]:
    """LLaVA-format conversations over training scenes (seeds disjoint from benchmarks).

    Each record: {"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
    {"from": "gpt", "value": "..."}, ...]} with `turns` question/answer pairs per image,
    as in LLaVA-v1.5-mix665k. `image` names the scene ("shapesworld/<seed>.png"). With
    probability `caption_rate` the first turn asks for a description of every object, the
    dense grounding signal that LLaVA's captioning data gives. `mix` weights the question
    kinds (default `MIX`); `occlusion` is the share of objects partly hidden in the images
    (`shapes.occluders`), named in the image's path; `decoys` draws MME's scene-level "no"
    questions against a decoy scene (testbed v4; `mme.SCENE_SUBTASKS`).
    """
    mix = {**MIX, **(mix or {})}
    rng = random.Random(seed)
    records = []
    for i in range(n_images):
        scene = training_scene(TRAIN_SEED_BASE + seed * n_images + i)
        conv = []
        described = rng.random() < caption_rate
        for t in range(turns):
            if t == 0 and described:
                q, a = DESCRIBE, caption(scene)
            else:
                q, a = _any_question(scene, rng, mix, decoys)
            conv.append({"from": "human", "value": ("<image>\n" if t == 0 else "") + q})
            conv.append({"from": "gpt", "value": a})
        records.append({"id": f"shapes-{scene.seed}", "image": image_name(scene.seed, occlusion),
                        "conversations": conv})
    return records


def binding_set(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n text-only records of one "which option says X?" question each (no image): the
    symbol-binding stage of teacher training, where the signal is concentrated."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        q, a, _ = option_lookup(rng)
        records.append({"id": f"binding-{seed}-{i}",
                        "conversations": [{"from": "human", "value": f"{q}\n{LETTER}"},
                                          {"from": "gpt", "value": a}]})
    return records


def _asked(n: int, turns: int, seed: int, prefix: str,
           ask: Callable[[Scene, random.Random], tuple[str, str] | None],
           occlusion: float = 0.0) -> list[dict[str, Any]]:
    """n records of `turns` turns each, every turn `ask(scene, rng)` -> (question with its
    prompt suffix, answer), or None to draw again. No question comes twice in a record,
    whose answer would then be in the text (given up after 50 draws)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        scene = training_scene(TRAIN_SEED_BASE + seed * n + i)
        conv, tries = [], 0
        while len(conv) < 2 * turns:
            qa, tries = ask(scene, rng), tries + 1
            if qa is None or (tries < 50 and any(qa[0] in c["value"] for c in conv[0::2])):
                continue
            conv.append({"from": "human", "value": ("" if conv else "<image>\n") + qa[0]})
            conv.append({"from": "gpt", "value": qa[1]})
        records.append({"id": f"{prefix}-{scene.seed}", "image": image_name(scene.seed, occlusion),
                        "conversations": conv})
    return records


def open_set(n: int, turns: int = 4, seed: int = 0,
             occlusion: float = 0.0) -> list[dict[str, Any]]:
    """n records of SQA/MMMU family questions asked the way the cloze formulation scores
    them: the question without its options, answered by the right option's text. Taught in
    a stage of its own and replayed in the last mix, it is the SQA/MMMU lever of testbed v3
    (docs/testbed-recipe-search.md, conclusion 6)."""
    def ask(scene, rng):
        qa = rng.choice(SQA_FAMILIES + MMMU_FAMILIES)(scene, rng)
        if qa is None:
            return None
        q, letter, extra = qa
        return (f"{q.split(chr(10) + 'Options:')[0]}\n{SHORT_ANSWER}",
                extra["options"][LETTERS.index(letter)])

    return _asked(n, turns, seed, "open", ask, occlusion)


SPATIAL_SUBTASKS = ("position", "left_right", "above_below", "size")


def spatial_set(n: int, turns: int = 4, seed: int = 0, short_share: float = 1 / 3,
                occlusion: float = 0.0) -> list[dict[str, Any]]:
    """n records of the questions no teacher had learned by the end of its plan (probe P34's
    profile: GQA position 10%, MME position, left/right, above/below and size at 50%): where
    an object is, how large it is, and how two objects lie, asked as GQA (short answer,
    `short_share` of the turns) and MME (yes/no, "yes" and "no" equally often)."""
    def ask(scene, rng):
        if rng.random() < short_share:
            qa = rng.choice((gqa_position, gqa_size))(scene, rng)
            return None if qa is None else (f"{qa[0]}\n{SHORT_ANSWER}", qa[1])
        pair = mme_pair(scene, rng, rng.choice(SPATIAL_SUBTASKS))
        answer = rng.choice(("yes", "no"))
        if pair is None:
            return None
        return f"{pair[0] if answer == 'yes' else pair[1]}\n{YES_NO}", answer

    return _asked(n, turns, seed, "spatial", ask, occlusion)


def calibration_sample(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n records drawn (seeded) from the instruction set, as the paper's n = 10 calibration."""
    pool = instruction_set(max(200, n), seed=0)
    return random.Random(seed).sample(pool, n)
