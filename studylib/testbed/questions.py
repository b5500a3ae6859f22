"""Question families: each generator returns (question, answer, extra) for a scene, or None when the scene does not support it (the caller retries with another generator or scene)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from studylib.testbed.shapes import (
    COLORS,
    COLS,
    CORNERS,
    HOT_COLORS,
    LETTERS,
    NUMBERS,
    ROWS,
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


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def _unique_by_shape(scene: Scene) -> list[Obj]:
    return [o for o in scene.objects if len(scene.find(shape=o.shape)) == 1]


def _unique_by_color(scene: Scene) -> list[Obj]:
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
    objs = _unique_by_shape(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    return f"What color is the {o.shape}?", o.color, {"type": "color"}


def gqa_shape(scene: Scene, rng: random.Random) -> QA | None:
    objs = _unique_by_color(scene)
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
    return f"How many {_plural(shape)} are there?", NUMBERS[n], {"type": "count"}


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
    hot = [o for o in _unique_by_shape(scene) if o.color in HOT_COLORS]
    cold = [o.shape for o in _unique_by_shape(scene) if o.color not in HOT_COLORS]
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
    objs = _unique_by_color(scene)
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


# MME-like: per image, one question answered "yes" and one answered "no" ------------------


def _yes_no_pair(make: Callable[[bool], str | None]) -> tuple[str, str] | None:
    yes, no = make(True), make(False)
    return (yes, no) if yes and no else None


# The subtasks whose question is about the whole scene ("Are there two red objects?"). Its
# "yes" question names a value the scene has, so a "no" question that drew the wrong value
# uniformly let the wording answer (a question-string guesser scored 60-83%,
# docs/wording_guesser.py). With a decoy scene from the same stream, the "no" question is
# the decoy's "yes" question, kept only when each question is false of the other's scene:
# every question string is then as often "yes" as "no" (testbed v4).
SCENE_SUBTASKS = ("existence", "count", "color", "shape", "color_count", "shape_count",
                  "arithmetic", "comparison", "removal")
Holds = Callable[[Scene], bool | None]  # is the statement true of a scene (None: ill-posed)


def decoy_scene(rng: random.Random) -> Scene:
    """A training scene to draw a "no" question from (`mme_pair`'s decoy)."""
    return make_scene(TRAIN_SEED_BASE + rng.randrange(10**6))


def _statement(scene: Scene, rng: random.Random, subtask: str) -> tuple[str, Holds] | None:
    """A question true of `scene` for a scene-level subtask, with its truth on any scene."""
    o = rng.choice(scene.objects)
    if subtask == "existence":
        shape = o.shape
        return f"Is there a {shape} in the image?", lambda s: bool(s.find(shape=shape))
    if subtask == "count":
        n = len(scene.objects)
        return f"Are there {NUMBERS[n]} objects in the image?", lambda s: len(s.objects) == n
    if subtask == "color":
        color = o.color
        return f"Is there a {color} object in the image?", lambda s: bool(s.find(color=color))
    if subtask == "shape":
        unique = _unique_by_color(scene)
        if not unique:
            return None
        color, shape = (u := rng.choice(unique)).color, u.shape

        def holds(s: Scene) -> bool | None:
            same = s.find(color=color)
            return same[0].shape == shape if len(same) == 1 else None
        return f"Is the {color} object a {shape}?", holds
    if subtask in ("color_count", "shape_count"):
        key = "color" if subtask == "color_count" else "shape"
        value = getattr(o, key)
        n = scene.count(lambda p: getattr(p, key) == value)
        noun = f"{value} objects" if key == "color" else _plural(value)
        return (f"Are there {NUMBERS[n]} {noun}?",
                lambda s: s.count(lambda p: getattr(p, key) == value) == n)
    if subtask == "arithmetic":
        pair = tuple(rng.sample(SHAPES, 2))
        total = scene.count(lambda p: p.shape in pair)
        q = "Is the number of {} plus the number of {} equal to {}?"
        return (q.format(_plural(pair[0]), _plural(pair[1]), NUMBERS[total]),
                lambda s: s.count(lambda p: p.shape in pair) == total)
    if subtask == "comparison":
        c1, c2 = rng.sample(COLORS, 2)
        n1, n2 = (scene.count(lambda p, c=c: p.color == c) for c in (c1, c2))
        if n1 == n2:
            return None
        more, less = (c1, c2) if n1 > n2 else (c2, c1)
        return (f"Are there more {more} objects than {less} objects?",
                lambda s: s.count(lambda p: p.color == more) > s.count(lambda p: p.color == less))
    if subtask == "removal":
        color = o.color
        left = scene.count(lambda p: p.color != color)
        q = "If every {} object were removed, would {} objects remain?"
        return q.format(color, NUMBERS[left]), lambda s: s.count(lambda p: p.color != color) == left
    raise ValueError(f"{subtask!r} is not a scene-level MME subtask")


def mme_pair(scene: Scene, rng: random.Random, subtask: str,
             decoy: Scene | None = None) -> tuple[str, str] | None:
    """(question whose answer is yes, question whose answer is no) for one subtask.

    With a `decoy` scene, a scene-level subtask's "no" question is the decoy's "yes"
    question, and the pair is kept only when each is false of the other's scene (None:
    draw again). Without one, the "no" question names a wrong value drawn uniformly: the
    leaky form the v1-v3 teachers were trained on, kept so that their training data can
    still be drawn (`studylib.testbed.teachers`)."""
    if decoy is not None and subtask in SCENE_SUBTASKS:
        yes, no = _statement(scene, rng, subtask), _statement(decoy, rng, subtask)
        if yes is None or no is None or yes[1](decoy) is not False or no[1](scene) is not False:
            return None
        return yes[0], no[0]
    objs = scene.objects
    o = rng.choice(objs)
    if subtask == "existence":
        absent = [s for s in SHAPES if not scene.find(shape=s)]
        if not absent:
            return None
        no_shape = rng.choice(absent)
        return f"Is there a {o.shape} in the image?", f"Is there a {no_shape} in the image?"
    if subtask == "count":
        n = len(objs)
        wrong = rng.choice([k for k in range(1, 7) if k != n])
        return (f"Are there {NUMBERS[n]} objects in the image?",
                f"Are there {NUMBERS[wrong]} objects in the image?")
    if subtask == "position":  # a single lookup: is this cell occupied?
        taken = {(p.row, p.col) for p in objs}
        free = [(r, c) for r in range(3) for c in range(3) if (r, c) not in taken]
        r, c = rng.choice(free)
        return (f"Is there an object in the {o.position} cell?",
                f"Is there an object in the {ROWS[r]} {COLS[c]} cell?")
    if subtask == "color":  # a single lookup; "Is the triangle red?" stayed at 50% (README)
        absent = [c for c in COLORS if not scene.find(color=c)]
        return (f"Is there a {o.color} object in the image?",
                f"Is there a {rng.choice(absent)} object in the image?")
    if subtask == "shape":
        objs_u = _unique_by_color(scene)
        if not objs_u:
            return None
        o = rng.choice(objs_u)
        wrong = rng.choice([s for s in SHAPES if s != o.shape])
        return f"Is the {o.color} object a {o.shape}?", f"Is the {o.color} object a {wrong}?"
    if subtask == "size":
        other = "small" if o.size == "large" else "large"
        return f"Is the {o.name} {o.size}?", f"Is the {o.name} {other}?"
    if subtask in ("left_right", "above_below"):
        rels = ("left of", "right of") if subtask == "left_right" else ("above", "below")
        pairs = [(a, b) for a in objs for b in objs if RELATIONS[rels[0]](a, b)]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        rel = rng.choice(rels)
        x, y = (a, b) if rel == rels[0] else (b, a)  # x rel y holds
        return f"Is the {x.name} {rel} the {y.name}?", f"Is the {y.name} {rel} the {x.name}?"
    if subtask == "color_count":
        color = o.color
        n = scene.count(lambda p: p.color == color)
        wrong = rng.choice([k for k in range(1, 5) if k != n])
        return (f"Are there {NUMBERS[n]} {color} objects?",
                f"Are there {NUMBERS[wrong]} {color} objects?")
    if subtask == "shape_count":
        shape = o.shape
        n = scene.count(lambda p: p.shape == shape)
        wrong = rng.choice([k for k in range(1, 5) if k != n])
        return (f"Are there {NUMBERS[n]} {_plural(shape)}?",
                f"Are there {NUMBERS[wrong]} {_plural(shape)}?")
    # --- cognition ---
    if subtask == "arithmetic":
        s1, s2 = rng.sample(SHAPES, 2)
        total = scene.count(lambda p: p.shape in (s1, s2))
        wrong = rng.choice([k for k in range(0, 6) if k != total])
        q = "Is the number of {} plus the number of {} equal to {}?"
        return (q.format(_plural(s1), _plural(s2), NUMBERS[total]),
                q.format(_plural(s1), _plural(s2), NUMBERS[wrong]))
    if subtask == "comparison":
        c1, c2 = rng.sample(COLORS, 2)
        n1 = scene.count(lambda p: p.color == c1)
        n2 = scene.count(lambda p: p.color == c2)
        if n1 == n2:
            return None
        more, less = (c1, c2) if n1 > n2 else (c2, c1)
        return (f"Are there more {more} objects than {less} objects?",
                f"Are there more {less} objects than {more} objects?")
    if subtask == "removal":
        color = o.color
        left = scene.count(lambda p: p.color != color)
        wrong = rng.choice([k for k in range(0, 6) if k != left])
        q = "If every {} object were removed, would {} objects remain?"
        return q.format(color, NUMBERS[left]), q.format(color, NUMBERS[wrong])
    if subtask == "rules":
        hot = [p for p in _unique_by_shape(scene) if p.color in HOT_COLORS]
        cold = [p for p in _unique_by_shape(scene) if p.color not in HOT_COLORS]
        if not hot or not cold:
            return None
        ctx = "Red, yellow and purple objects are hot; other objects are cold."
        return (f"{ctx} Is the {rng.choice(hot).shape} hot?",
                f"{ctx} Is the {rng.choice(cold).shape} hot?")
    raise ValueError(f"unknown MME subtask {subtask!r}")


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
    objs = _unique_by_shape(scene)
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
