"""ShapesWorld: procedural scenes, the world the testbed's benchmarks and training data ask about.

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

The question generators live in `questions`, the benchmark items in `suite`, the
instruction-tuning set in `instructions`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
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

# Occlusion (testbed v3): a share of the objects partly hidden behind a grey occluder, as
# real benchmark images hide objects behind others. The scene graph, and so every question and
# answer, is unchanged: a hidden object is still there. OCCLUSION is the share in the
# benchmarks' scenes and the default of a v3 plan's training scenes; the recipe that trains a
# teacher before its plan renders without occluders (`render(occlusion=0.0)`). A quarter
# takes POPE and SQA off the ceiling a teacher with the skill reaches in full view
# (docs/testbed-recipe-search.md, "Hard items", conclusion 20).
OCCLUSION = 0.25
OCCLUDER_RGB = (120, 120, 120)  # a grey no shape has
OCCLUDER_COVER = (0.4, 0.7)  # the share of an object's extent hidden, from one side
SIDES = ("top", "bottom", "left", "right")

# Scene seeds. Benchmark b's split draws its scenes in order from BENCH_SEED_BASE + 10**6 b +
# SPLIT_OFFSETS[split], at most BENCH_WINDOW of them; training scenes (TRAIN_SEED_BASE +
# data seed * records + i, `instructions`) may lie anywhere outside those windows, and
# `training_scene` refuses one inside. A plan stage's seeds reach ~10**9: the closing mix's
# open share of the v3/v4 plans lies at 13,250,400-13,252,799, between MME-P's two windows.
TRAIN_SEED_BASE = 0
BENCH_SEED_BASE = 10**7
SPLIT_OFFSETS = {"test": 0, "val": 5 * 10**5}
BENCH_WINDOW = 10**5


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


def benchmark_seed(seed: int) -> bool:
    """Whether `seed` lies in a benchmark split's window of scenes."""
    offset = seed - BENCH_SEED_BASE
    return (0 <= offset < 10**6 * len(BENCHMARKS)
            and any(0 <= offset % 10**6 - o < BENCH_WINDOW for o in SPLIT_OFFSETS.values()))


def training_scene(seed: int) -> Scene:
    """The training scene of `seed`, refused if a benchmark could draw it."""
    if benchmark_seed(seed):
        raise ValueError(f"training scene seed {seed} lies in a benchmark's window "
                         f"(shapes.BENCH_SEED_BASE): choose another data seed")
    return make_scene(seed)


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


def occluders(scene: Scene, occlusion: float) -> list[tuple[str, float] | None]:
    """Per object, the (side, covered share) of its occluder, or None if it is in full view.

    Drawn from a stream of its own, so the scene graph is the same in every world, and each
    object's draw is the same at every share (a larger share hides a superset of objects)."""
    rng = random.Random(f"occlusion-{scene.seed}")
    out: list[tuple[str, float] | None] = []
    for _ in scene.objects:
        u, side, cover = rng.random(), rng.choice(SIDES), rng.uniform(*OCCLUDER_COVER)
        out.append((side, cover) if u < occlusion else None)
    return out


def _occluder_mask(side: str, cover: float, radius: float, cx: float,
                   cy: float) -> np.ndarray:
    """A grey band across the object, from one side over `cover` of its extent."""
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5
    half = radius + 1.5  # a little wider than the object
    # depth into the object from the occluded side, and position across it
    depth = {"top": y - cy, "bottom": cy - y, "left": x - cx, "right": cx - x}[side]
    across = x - cx if side in ("top", "bottom") else y - cy
    return (np.abs(across) <= half) & (depth >= -half) & (depth <= 2 * radius * cover - radius)


def render(scene: Scene, occlusion: float = 0.0) -> Image.Image:
    """Rasterise a scene to a 48 x 48 RGB image (deterministic in the scene's seed), with
    a share `occlusion` of its objects partly hidden (`occluders`)."""
    rng = np.random.default_rng(scene.seed)
    img = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 30.0, dtype=np.float32)
    for o, hidden in zip(scene.objects, occluders(scene, occlusion), strict=True):
        radius = 7.0 if o.size == "large" else 4.0
        jitter = rng.integers(-1, 2, size=2)
        cx = o.col * CELL + CELL / 2 + jitter[0]
        cy = o.row * CELL + CELL / 2 + jitter[1]
        shade = rng.uniform(0.85, 1.0)
        img[_mask(o.shape, radius, cx, cy)] = np.array(RGB[o.color], dtype=np.float32) * shade
        if hidden:
            img[_occluder_mask(*hidden, radius, cx, cy)] = np.array(OCCLUDER_RGB, np.float32)
    if scene.noise:
        img += rng.normal(0.0, scene.noise, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def whole_percent(occlusion: float) -> bool:
    """Whether a share can be named in a path: a whole percent (`image_name`)."""
    return abs(100 * occlusion - round(100 * occlusion)) < 1e-9


def image_name(seed: int, occlusion: float = 0.0) -> str:
    """The path a record names its image by: the world's occlusion, in percent, is a folder
    ("shapesworld/occluded-20/00000123.png"); a scene in full view has none."""
    if not whole_percent(occlusion):
        raise ValueError(f"occlusion {occlusion} is not a whole percent")
    world = f"occluded-{round(100 * occlusion):02d}/" if occlusion else ""
    return f"shapesworld/{world}{seed:08d}.png"


def load_image(name: str) -> Image.Image:
    """Render the image a record names; the `image` field is a path in LLaVA's format."""
    parts = name.split("/")
    folder = parts[-2] if len(parts) > 1 else ""
    occlusion = (int(folder.removeprefix("occluded-")) / 100
                 if folder.startswith("occluded-") else 0.0)
    return render(make_scene(int(parts[-1].split(".")[0])), occlusion)


