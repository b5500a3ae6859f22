"""ShapesWorld: procedural scenes, an instruction-tuning set and six benchmark analogues.

No weights or datasets can be downloaded on the machines this study was built on, so the
default study runs on a world it generates itself. A *scene* is a few coloured shapes on a
3 x 3 grid; every question is answered from the scene graph, so answers are correct by
construction and an oracle that reads the graph scores 100%.

Everything is a pure function of a seed: the same seed gives the same pixels, questions and
answers on every machine. Train and benchmark scenes come from disjoint seed ranges.

The question families mirror the paper's benchmarks (study.md, "Evaluation"):

==========  =====================================================  ==================
benchmark   format                                                 metric
==========  =====================================================  ==================
GQA         compositional question, one word or phrase              exact match
SQA         context + question + lettered choices                   accuracy
POPE        "is there a <object>?" (random/popular/adversarial)     F1 (yes = positive)
MME-P       10 perception subtasks, a yes and a no question / img   acc + acc+, 0-2000
MME-C       4 cognition subtasks, same format                       acc + acc+, 0-800
MMMU        multi-step multiple choice (4 options)                  accuracy
==========  =====================================================  ==================
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SIZE = 48  # pixels; a 3 x 3 grid of 16-pixel cells
CELL = IMAGE_SIZE // 3
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLORS = ("red", "green", "blue", "yellow", "purple", "cyan")
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
# Skewed priors make some objects "popular", as COCO's frequent objects are for POPE.
SHAPE_PRIOR = (0.30, 0.25, 0.20, 0.15, 0.10)
COLOR_PRIOR = (0.25, 0.20, 0.18, 0.15, 0.12, 0.10)
RGB = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 200),
    "cyan": (40, 200, 210),
}
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LETTERS = ("A", "B", "C", "D")
# SQA/MME-C "science" rules: stated in the context, never visible in the pixels.
HOT_COLORS = ("red", "yellow", "purple")
CORNERS = {"circle": 0, "triangle": 3, "square": 4, "diamond": 4, "cross": 12}

BENCHMARKS = ("GQA", "SQA", "POPE", "MME-P", "MME-C", "MMMU")
MME_P_SUBTASKS = (
    "existence",
    "count",
    "position",
    "color",
    "shape",
    "size",
    "left_right",
    "above_below",
    "color_count",
    "shape_count",
)
MME_C_SUBTASKS = ("arithmetic", "comparison", "removal", "rules")
POPE_SPLITS = ("random", "popular", "adversarial")

# Prompt suffixes follow lmms-eval's for the real benchmarks.
SHORT_ANSWER = "Answer the question using a single word or phrase."
YES_NO = "Please answer yes or no."
LETTER = "Answer with the option's letter from the given choices directly."

TRAIN_SEED_BASE = 0  # train scenes use seeds [0, 10**6)
BENCH_SEED_BASE = 10**7  # benchmark scenes use seeds [10**7, ...): disjoint from train


@dataclasses.dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    size: str
    row: int
    col: int

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def position(self) -> str:
        return f"{ROWS[self.row]} {COLS[self.col]}"


@dataclasses.dataclass(frozen=True)
class Scene:
    seed: int
    objects: tuple[Obj, ...]
    noise: float

    def count(self, pred: Callable[[Obj], bool] = lambda o: True) -> int:
        return sum(pred(o) for o in self.objects)

    def find(self, color: str | None = None, shape: str | None = None) -> list[Obj]:
        return [
            o
            for o in self.objects
            if (color is None or o.color == color) and (shape is None or o.shape == shape)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "noise": self.noise,
            "objects": [dataclasses.asdict(o) for o in self.objects],
        }


def make_scene(seed: int, min_objects: int = 2, max_objects: int = 5) -> Scene:
    """Draw a scene: distinct grid cells, each object's (colour, shape) pair unique."""
    rng = random.Random(seed)
    n = rng.randint(min_objects, max_objects)
    cells = rng.sample(range(9), n)
    objects, seen = [], set()
    for cell in cells:
        while True:
            shape = rng.choices(SHAPES, SHAPE_PRIOR)[0]
            color = rng.choices(COLORS, COLOR_PRIOR)[0]
            if (color, shape) not in seen:
                break
        seen.add((color, shape))
        objects.append(Obj(shape, color, rng.choice(SIZES), cell // 3, cell % 3))
    return Scene(seed, tuple(objects), noise=rng.choice((0.0, 8.0, 16.0)))


def _mask(shape: str, radius: float, cx: float, cy: float) -> np.ndarray:
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        return (np.abs(dx) <= radius * 0.85) & (np.abs(dy) <= radius * 0.85)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "triangle":  # apex up
        inside_y = (dy >= -radius) & (dy <= radius)
        return inside_y & (np.abs(dx) <= (dy + radius) / 2)
    if shape == "cross":
        arm = radius / 3
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= radius)) | (
            (np.abs(dy) <= arm) & (np.abs(dx) <= radius)
        )
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene) -> Image.Image:
    """Rasterise a scene to a 48 x 48 RGB image (deterministic in the scene's seed)."""
    rng = np.random.default_rng(scene.seed)
    img = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 30.0, dtype=np.float32)
    for o in scene.objects:
        radius = 7.0 if o.size == "large" else 4.0
        jitter = rng.integers(-1, 2, size=2)
        cx = o.col * CELL + CELL / 2 + jitter[0]
        cy = o.row * CELL + CELL / 2 + jitter[1]
        shade = rng.uniform(0.85, 1.0)
        img[_mask(o.shape, radius, cx, cy)] = np.array(RGB[o.color], dtype=np.float32) * shade
    if scene.noise:
        img += rng.normal(0.0, scene.noise, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------------------------------
# Questions. Each generator returns (question, answer, extra) or None when the scene does
# not support it; the caller retries with another generator or scene.
# ---------------------------------------------------------------------------------------

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


def _choices(rng: random.Random, answer: str, pool: list[str]) -> tuple[str, str]:
    """Four lettered options containing the answer; returns (options text, letter)."""
    distractors = rng.sample([p for p in pool if p != answer], 3)
    options = distractors + [answer]
    rng.shuffle(options)
    text = " ".join(f"{letter}. {opt}" for letter, opt in zip(LETTERS, options, strict=False))
    return text, LETTERS[options.index(answer)]


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
    options, letter = _choices(rng, answer, pool + [answer])
    context = "Context: red, yellow and purple objects are hot. other objects are cold."
    q = f"{context}\nQuestion: which object in the image is hot?\nOptions: {options}"
    return q, letter, {"type": "hot"}


def sqa_corners(scene: Scene, rng: random.Random) -> QA | None:
    objs = _unique_by_color(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    answer = NUMBERS[CORNERS[o.shape]] if CORNERS[o.shape] < 10 else "twelve"
    pool = ["zero", "three", "four", "twelve", "five"]
    options, letter = _choices(rng, answer, pool)
    context = (
        "Context: a circle has zero corners, a triangle three, a square and a diamond four, "
        "a cross twelve."
    )
    q = f"{context}\nQuestion: how many corners does the {o.color} object have?\nOptions: {options}"
    return q, letter, {"type": "corners"}


def sqa_count(scene: Scene, rng: random.Random) -> QA | None:
    n = len(scene.objects)
    pool = [NUMBERS[i] for i in range(1, 7)]
    options, letter = _choices(rng, NUMBERS[n], pool)
    context = "Context: every object in the image is a toy."
    q = f"{context}\nQuestion: how many toys are in the image?\nOptions: {options}"
    return q, letter, {"type": "count"}


SQA_FAMILIES = (sqa_hot, sqa_corners, sqa_count)


# POPE-like: object existence with three kinds of negatives ------------------------------

_ALL_OBJECTS = [(c, s) for c in COLORS for s in SHAPES]
_POPULARITY = sorted(
    _ALL_OBJECTS,
    key=lambda cs: -COLOR_PRIOR[COLORS.index(cs[0])] * SHAPE_PRIOR[SHAPES.index(cs[1])],
)


def pope_item(scene: Scene, rng: random.Random, split: str, positive: bool) -> QA | None:
    present = {(o.color, o.shape) for o in scene.objects}
    if positive:
        color, shape = rng.choice(sorted(present))
    else:
        absent = [cs for cs in _ALL_OBJECTS if cs not in present]
        if split == "random":
            color, shape = rng.choice(absent)
        elif split == "popular":  # the most frequent objects overall that are absent here
            color, shape = [cs for cs in _POPULARITY if cs not in present][rng.randrange(3)]
        elif split == "adversarial":  # share a colour or a shape with something present
            near = [cs for cs in absent if any(cs[0] == c or cs[1] == s for c, s in present)]
            color, shape = rng.choice(near)
        else:
            raise ValueError(f"unknown POPE split {split!r}")
    q = f"Is there a {color} {shape} in the image?"
    return q, "yes" if positive else "no", {"split": split}


# MME-like: per image, one question answered "yes" and one answered "no" ------------------


def _yes_no_pair(make: Callable[[bool], str | None]) -> tuple[str, str] | None:
    yes, no = make(True), make(False)
    return (yes, no) if yes and no else None


def mme_pair(scene: Scene, rng: random.Random, subtask: str) -> tuple[str, str] | None:
    """(question whose answer is yes, question whose answer is no) for one subtask."""
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
    if subtask == "position":
        wrong = rng.choice([r for r in range(3) if r != o.row])
        return (f"Is the {o.name} in the {ROWS[o.row]} row?",
                f"Is the {o.name} in the {ROWS[wrong]} row?")
    if subtask == "color":
        objs_u = _unique_by_shape(scene)
        if not objs_u:
            return None
        o = rng.choice(objs_u)
        wrong = rng.choice([c for c in COLORS if c != o.color])
        return f"Is the {o.shape} {o.color}?", f"Is the {o.shape} {wrong}?"
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
    options, letter = _choices(rng, answer, list(COLORS))
    q = (f"Question: what color is the other object in the same row as the {anchor.name}?"
         f"\nOptions: {options}")
    return q, letter, {"type": "row_color"}


def mmmu_same_color_count(scene: Scene, rng: random.Random) -> QA | None:
    objs = _unique_by_shape(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    n = scene.count(lambda p: p.color == o.color and p is not o)
    options, letter = _choices(rng, NUMBERS[n], list(NUMBERS[:5]))
    q = (f"Question: how many other objects have the same color as the {o.shape}?"
         f"\nOptions: {options}")
    return q, letter, {"type": "same_color_count"}


def mmmu_hot_corners(scene: Scene, rng: random.Random) -> QA | None:
    hot = [o for o in scene.objects if o.color in HOT_COLORS]
    total = sum(CORNERS[o.shape] for o in hot)
    if total > 20:
        return None
    pool = [str(k) for k in (0, 3, 4, 7, 8, 11, 12, 15, 16)]
    options, letter = _choices(rng, str(total), pool)
    q = ("Context: red, yellow and purple objects are hot. a circle has zero corners, a "
         "triangle three, a square and a diamond four, a cross twelve.\nQuestion: how many "
         f"corners do the hot objects have in total?\nOptions: {options}")
    return q, letter, {"type": "hot_corners"}


MMMU_FAMILIES = (mmmu_row_color, mmmu_same_color_count, mmmu_hot_corners)


# ---------------------------------------------------------------------------------------
# Items, benchmarks and the instruction-tuning set
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Item:
    """One benchmark question. `group` ties MME's yes/no pair of an image (for acc+)."""

    benchmark: str
    id: str
    scene_seed: int
    question: str  # without the answer-format suffix
    suffix: str
    answer: str
    subset: str = ""  # POPE split or MME subtask
    group: str = ""

    @property
    def prompt(self) -> str:
        return f"{self.question}\n{self.suffix}"

    @property
    def image(self) -> Image.Image:
        return render(make_scene(self.scene_seed))


# Benchmark sizes: large enough for a +-2-4 point 95% CI, small enough to score in seconds.
BENCHMARK_SIZES = {"GQA": 600, "SQA": 300, "POPE": 600, "MME-P": 300, "MME-C": 160, "MMMU": 300}
# MME-P: 300 images = 30 per subtask, 2 questions each (600 items); MME-C: 40 per subtask.


def _scene_stream(base: int) -> Iterator[Scene]:
    seed = base
    while True:
        yield make_scene(seed)
        seed += 1


def _mc_or_short(name: str, families, size: int, base: int, suffix: str) -> list[Item]:
    rng = random.Random(base)
    items: list[Item] = []
    scenes = _scene_stream(base)
    while len(items) < size:
        scene = next(scenes)
        family = families[len(items) % len(families)]
        qa = family(scene, rng)
        if qa is None:
            continue
        q, a, extra = qa
        items.append(Item(name, f"{name}-{len(items):04d}", scene.seed, q, suffix, a,
                          subset=extra.get("type", "")))
    return items


def _pope(size: int, base: int) -> list[Item]:
    rng = random.Random(base)
    items: list[Item] = []
    scenes = _scene_stream(base)
    per_split = size // len(POPE_SPLITS)
    for split in POPE_SPLITS:
        for k in range(per_split):
            scene = next(scenes)
            q, a, _ = pope_item(scene, rng, split, positive=k % 2 == 0)
            items.append(Item("POPE", f"POPE-{len(items):04d}", scene.seed, q, YES_NO, a,
                              subset=split))
    return items


def _mme(name: str, subtasks, images: int, base: int) -> list[Item]:
    rng = random.Random(base)
    items: list[Item] = []
    scenes = _scene_stream(base)
    per_task = images // len(subtasks)
    for subtask in subtasks:
        done = 0
        while done < per_task:
            scene = next(scenes)
            pair = mme_pair(scene, rng, subtask)
            if pair is None:
                continue
            group = f"{name}-{subtask}-{done:03d}"
            for q, a in zip(pair, ("yes", "no"), strict=True):
                items.append(Item(name, f"{group}-{a}", scene.seed, q, YES_NO, a,
                                  subset=subtask, group=group))
            done += 1
    return items


def benchmark(name: str, size: int | None = None) -> list[Item]:
    """The items of one benchmark analogue, fixed for a given size."""
    size = size or BENCHMARK_SIZES[name]
    offset = BENCH_SEED_BASE + 10**6 * BENCHMARKS.index(name)  # each benchmark its own scenes
    if name == "GQA":
        return _mc_or_short(name, GQA_FAMILIES, size, offset, SHORT_ANSWER)
    if name == "SQA":
        return _mc_or_short(name, SQA_FAMILIES, size, offset, LETTER)
    if name == "MMMU":
        return _mc_or_short(name, MMMU_FAMILIES, size, offset, LETTER)
    if name == "POPE":
        return _pope(size, offset)
    if name == "MME-P":
        return _mme(name, MME_P_SUBTASKS, size, offset)
    if name == "MME-C":
        return _mme(name, MME_C_SUBTASKS, size, offset)
    raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")


def _any_question(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """One training question of a random family, in its benchmark's prompt format."""
    while True:
        kind = rng.choices(("gqa", "sqa", "pope", "mme", "mmmu"), (4, 2, 2, 4, 2))[0]
        if kind == "gqa":
            qa, suffix = rng.choice(GQA_FAMILIES)(scene, rng), SHORT_ANSWER
        elif kind == "sqa":
            qa, suffix = rng.choice(SQA_FAMILIES)(scene, rng), LETTER
        elif kind == "mmmu":
            qa, suffix = rng.choice(MMMU_FAMILIES)(scene, rng), LETTER
        elif kind == "pope":
            split = rng.choice(POPE_SPLITS)
            qa, suffix = pope_item(scene, rng, split, rng.random() < 0.5), YES_NO
        else:
            subtask = rng.choice(MME_P_SUBTASKS + MME_C_SUBTASKS)
            pair = mme_pair(scene, rng, subtask)
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


def instruction_set(n_images: int, turns: int = 3, seed: int = 0,
                    caption_rate: float = 0.5) -> list[dict[str, Any]]:
    """LLaVA-format conversations over training scenes (seeds disjoint from benchmarks).

    Each record: {"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."},
    {"from": "gpt", "value": "..."}, ...]} with `turns` question/answer pairs per image,
    as in LLaVA-v1.5-mix665k. `image` names the scene ("shapesworld/<seed>.png"). With
    probability `caption_rate` the first turn asks for a description of every object, the
    dense grounding signal that LLaVA's captioning data gives.
    """
    rng = random.Random(seed)
    records = []
    for i in range(n_images):
        scene = make_scene(TRAIN_SEED_BASE + seed * n_images + i)
        conv = []
        described = rng.random() < caption_rate
        for t in range(turns):
            if t == 0 and described:
                q, a = DESCRIBE, caption(scene)
            else:
                q, a = _any_question(scene, rng)
            conv.append({"from": "human", "value": ("<image>\n" if t == 0 else "") + q})
            conv.append({"from": "gpt", "value": a})
        records.append({"id": f"shapes-{scene.seed}", "image": image_name(scene.seed),
                        "conversations": conv})
    return records


def image_name(seed: int) -> str:
    return f"shapesworld/{seed:08d}.png"


def load_image(name: str) -> Image.Image:
    """Render the image a record names; the `image` field is a path in LLaVA's format."""
    stem = name.rsplit("/", 1)[-1].split(".")[0]
    return render(make_scene(int(stem)))


def calibration_sample(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n records drawn (seeded) from the instruction set, as the paper's n = 10 calibration."""
    pool = instruction_set(max(200, n), seed=0)
    return random.Random(seed).sample(pool, n)
