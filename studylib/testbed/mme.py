"""MME-like questions: per image, one question answered "yes" and one answered "no".

Since testbed v4 a question about the whole scene has its "no" twin drawn against a decoy
scene (`mme_pair`'s `decoy`), so that its wording does not answer it
(docs/testbed-recipe-search.md, "MME questions that answer themselves").
"""

from __future__ import annotations

import random
from collections.abc import Callable

from studylib.testbed.questions import RELATIONS, plural, unique_by_color, unique_by_shape
from studylib.testbed.shapes import (
    COLORS,
    COLS,
    HOT_COLORS,
    NUMBERS,
    ROWS,
    SHAPES,
    TRAIN_SEED_BASE,
    Scene,
    make_scene,
)

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
        unique = unique_by_color(scene)
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
        noun = f"{value} objects" if key == "color" else plural(value)
        return (f"Are there {NUMBERS[n]} {noun}?",
                lambda s: s.count(lambda p: getattr(p, key) == value) == n)
    if subtask == "arithmetic":
        pair = tuple(rng.sample(SHAPES, 2))
        total = scene.count(lambda p: p.shape in pair)
        q = "Is the number of {} plus the number of {} equal to {}?"
        return (q.format(plural(pair[0]), plural(pair[1]), NUMBERS[total]),
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
    still be drawn (`studylib.testbed.teacher_recipes`)."""
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
        objs_u = unique_by_color(scene)
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
        return (f"Are there {NUMBERS[n]} {plural(shape)}?",
                f"Are there {NUMBERS[wrong]} {plural(shape)}?")
    # --- cognition ---
    if subtask == "arithmetic":
        s1, s2 = rng.sample(SHAPES, 2)
        total = scene.count(lambda p: p.shape in (s1, s2))
        wrong = rng.choice([k for k in range(0, 6) if k != total])
        q = "Is the number of {} plus the number of {} equal to {}?"
        return (q.format(plural(s1), plural(s2), NUMBERS[total]),
                q.format(plural(s1), plural(s2), NUMBERS[wrong]))
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
        hot = [p for p in unique_by_shape(scene) if p.color in HOT_COLORS]
        cold = [p for p in unique_by_shape(scene) if p.color not in HOT_COLORS]
        if not hot or not cold:
            return None
        ctx = "Red, yellow and purple objects are hot; other objects are cold."
        return (f"{ctx} Is the {rng.choice(hot).shape} hot?",
                f"{ctx} Is the {rng.choice(cold).shape} hot?")
    raise ValueError(f"unknown MME subtask {subtask!r}")


