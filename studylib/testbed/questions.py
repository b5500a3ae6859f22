"""Question families: each generator returns (question, answer, extra) for a scene, or None when the scene does not support it (the caller retries with another generator or scene)."""

from __future__ import annotations

import random
from typing import Any

from studylib.testbed.shapes import (
    COLORS,
    CORNERS,
    HOT_COLORS,
    LETTERS,
    NUMBERS,
    SHAPE_PRIOR,
    SHAPES,
    TRAIN_SEED_BASE,
    Obj,
    Scene,
    make_scene,
)

QA = tuple[str, str, dict[str, Any]]
RELATIONS = {
    "left of": lambda a, b: a.col < b.col,
    "right of": lambda a, b: a.col > b.col,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def unique_by_shape(scene: Scene) -> list[Obj]:
    return [o for o in scene.objects if len(scene.find(shape=o.shape)) == 1]


def unique_by_color(scene: Scene) -> list[Obj]:
    return [o for o in scene.objects if len(scene.find(color=o.color)) == 1]


def _choices(rng: random.Random, answer: str,
             pool: list[str]) -> tuple[str, str, tuple[str, ...]]:
    """Four lettered options containing the answer; returns (options text, letter, options):
    the options themselves, in letter order, are what cloze scoring compares
    (`studylib.evaluation.choice`)."""
    distractors = rng.sample([p for p in pool if p != answer], 3)
    options = distractors + [answer]
    rng.shuffle(options)
    text = " ".join(f"{letter}. {opt}" for letter, opt in zip(LETTERS, options, strict=False))
    return text, LETTERS[options.index(answer)], tuple(options)


# GQA-like: compositional short answers --------------------------------------------------


def gqa_color(scene: Scene, rng: random.Random) -> QA | None:
    objs = unique_by_shape(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    return f"What color is the {o.shape}?", o.color, {"type": "color"}


def gqa_shape(scene: Scene, rng: random.Random) -> QA | None:
    objs = unique_by_color(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    return f"What shape is the {o.color} object?", o.shape, {"type": "shape"}


def gqa_position(scene: Scene, rng: random.Random) -> QA | None:
    o = rng.choice(scene.objects)
    return f"Where is the {o.name}?", o.position, {"type": "position"}


def gqa_size(scene: Scene, rng: random.Random) -> QA | None:
    o = rng.choice(scene.objects)
    return f"What size is the {o.name}?", o.size, {"type": "size"}


def gqa_count(scene: Scene, rng: random.Random) -> QA | None:
    if rng.random() < 0.5:
        color = rng.choice(COLORS)
        n = scene.count(lambda o: o.color == color)
        return f"How many {color} objects are there?", NUMBERS[n], {"type": "count"}
    shape = rng.choice(SHAPES)
    n = scene.count(lambda o: o.shape == shape)
    return f"How many {plural(shape)} are there?", NUMBERS[n], {"type": "count"}


def gqa_relation(scene: Scene, rng: random.Random) -> QA | None:
    """Two hops: find the anchor, then the single object in the stated relation to it."""
    anchor = rng.choice(scene.objects)
    relation = rng.choice(list(RELATIONS))
    hits = [o for o in scene.objects if RELATIONS[relation](o, anchor)]
    if len(hits) != 1:
        return None
    q = f"What color is the object {relation} the {anchor.name}?"
    return q, hits[0].color, {"type": "relation"}


GQA_FAMILIES = (gqa_color, gqa_shape, gqa_position, gqa_size, gqa_count, gqa_relation)


# SQA-like: context + question + lettered choices -----------------------------------------


def sqa_hot(scene: Scene, rng: random.Random) -> QA | None:
    hot = [o for o in unique_by_shape(scene) if o.color in HOT_COLORS]
    cold = [o.shape for o in unique_by_shape(scene) if o.color not in HOT_COLORS]
    if len(hot) != 1:
        return None
    answer = hot[0].shape
    pool = cold + [s for s in SHAPES if s not in {o.shape for o in scene.objects}]
    if len(pool) < 3:
        return None
    options, letter, choices = _choices(rng, answer, pool + [answer])
    context = "Context: red, yellow and purple objects are hot. other objects are cold."
    q = f"{context}\nQuestion: which object in the image is hot?\nOptions: {options}"
    return q, letter, {"type": "hot", "options": choices}


def sqa_corners(scene: Scene, rng: random.Random) -> QA | None:
    objs = unique_by_color(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    answer = NUMBERS[CORNERS[o.shape]] if CORNERS[o.shape] < 10 else "twelve"
    pool = ["zero", "three", "four", "twelve", "five"]
    options, letter, choices = _choices(rng, answer, pool)
    context = (
        "Context: a circle has zero corners, a triangle three, a square and a diamond four, "
        "a cross twelve."
    )
    q = f"{context}\nQuestion: how many corners does the {o.color} object have?\nOptions: {options}"
    return q, letter, {"type": "corners", "options": choices}


def sqa_count(scene: Scene, rng: random.Random) -> QA | None:
    n = len(scene.objects)
    pool = [NUMBERS[i] for i in range(1, 7)]
    options, letter, choices = _choices(rng, NUMBERS[n], pool)
    context = "Context: every object in the image is a toy."
    q = f"{context}\nQuestion: how many toys are in the image?\nOptions: {options}"
    return q, letter, {"type": "count", "options": choices}


SQA_FAMILIES = (sqa_hot, sqa_corners, sqa_count)
# POPE-like: object existence with three kinds of negatives ------------------------------
# As real POPE asks about atomic object categories ("Is there a dog in the image?"), an object
# here is a shape. Measured (README, "Testbed"): the same model reached 99% on "Is there a
# triangle?" in the steps where "Is there a red triangle?" reached 66%; colour-and-shape
# conjunctions are GQA's job, the compositional benchmark.


def _co_occurrence() -> dict[str, dict[str, int]]:
    """How often two shapes appear in the same training scene (POPE's adversarial negatives
    are the absent objects that co-occur most with the present ones, as in COCO)."""
    counts = {a: dict.fromkeys(SHAPES, 0) for a in SHAPES}
    for seed in range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + 2000):
        present = {o.shape for o in make_scene(seed).objects}
        for a in present:
            for b in present - {a}:
                counts[a][b] += 1
    return counts


_CO_OCCURRENCE = _co_occurrence()


def pope_item(scene: Scene, rng: random.Random, split: str, positive: bool) -> QA | None:
    """"Is there a <shape> in the image?"; None when every shape is present (no negative)."""
    present = sorted({o.shape for o in scene.objects}, key=SHAPES.index)
    absent = [s for s in SHAPES if s not in present]
    if not absent:
        return None
    if positive:
        shape = rng.choice(present)
    elif split == "random":
        shape = rng.choice(absent)
    elif split == "popular":  # the most frequent shape overall that is absent here
        shape = max(absent, key=lambda s: SHAPE_PRIOR[SHAPES.index(s)])
    elif split == "adversarial":  # the absent shape that co-occurs most with the present ones
        shape = max(absent, key=lambda s: sum(_CO_OCCURRENCE[p][s] for p in present))
    else:
        raise ValueError(f"unknown POPE split {split!r}")
    q = f"Is there a {shape} in the image?"
    return q, "yes" if positive else "no", {"split": split}


# MMMU-like: harder multi-step multiple choice -------------------------------------------


def mmmu_row_color(scene: Scene, rng: random.Random) -> QA | None:
    """Three hops: anchor -> its row -> the largest other object there -> its colour."""
    anchor = rng.choice(scene.objects)
    same_row = [o for o in scene.objects if o.row == anchor.row and o is not anchor]
    if len(same_row) != 1:
        return None
    answer = same_row[0].color
    options, letter, choices = _choices(rng, answer, list(COLORS))
    q = (f"Question: what color is the other object in the same row as the {anchor.name}?"
         f"\nOptions: {options}")
    return q, letter, {"type": "row_color", "options": choices}


def mmmu_same_color_count(scene: Scene, rng: random.Random) -> QA | None:
    objs = unique_by_shape(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    n = scene.count(lambda p: p.color == o.color and p is not o)
    options, letter, choices = _choices(rng, NUMBERS[n], list(NUMBERS[:5]))
    q = (f"Question: how many other objects have the same color as the {o.shape}?"
         f"\nOptions: {options}")
    return q, letter, {"type": "same_color_count", "options": choices}


def mmmu_hot_corners(scene: Scene, rng: random.Random) -> QA | None:
    hot = [o for o in scene.objects if o.color in HOT_COLORS]
    total = sum(CORNERS[o.shape] for o in hot)
    if total > 20:
        return None
    pool = [str(k) for k in (0, 3, 4, 7, 8, 11, 12, 15, 16)]
    options, letter, choices = _choices(rng, str(total), pool)
    q = ("Context: red, yellow and purple objects are hot. a circle has zero corners, a "
         "triangle three, a square and a diamond four, a cross twelve.\nQuestion: how many "
         f"corners do the hot objects have in total?\nOptions: {options}")
    return q, letter, {"type": "hot_corners", "options": choices}


MMMU_FAMILIES = (mmmu_row_color, mmmu_same_color_count, mmmu_hot_corners)


# Symbol binding: a text-only multiple-choice warm-up ------------------------------------


def option_lookup(rng: random.Random) -> QA:
    """"Which option says <word>?": mapping an option's content to its letter, with no image.

    Not a benchmark: a teacher-training stage. At this size the letter format itself is a
    barrier (README, "Testbed": SQA/MMMU stayed at 24% after 900 mixed steps); trained alone,
    this question jumps from chance to ~99% within a few hundred steps, and then multiple
    choice over the image can be learned.
    """
    pool = rng.choice((SHAPES, COLORS, NUMBERS[:7]))
    answer = rng.choice(pool)
    options, letter, choices = _choices(rng, answer, list(pool))
    q = f"Question: which option says {answer}?\nOptions: {options}"
    return q, letter, {"options": choices}
