"""The six benchmark analogues: seeded items over benchmark scenes (seeds disjoint from training)."""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Iterator

from PIL import Image

from studylib.testbed import shapes
from studylib.testbed.mme import SCENE_SUBTASKS, mme_pair
from studylib.testbed.questions import GQA_FAMILIES, MMMU_FAMILIES, SQA_FAMILIES, pope_item
from studylib.testbed.shapes import (
    BENCH_SEED_BASE,
    BENCH_WINDOW,
    BENCHMARKS,
    LETTER,
    MME_C_SUBTASKS,
    MME_P_SUBTASKS,
    POPE_SPLITS,
    SHORT_ANSWER,
    SPLIT_OFFSETS,
    YES_NO,
    Scene,
    make_scene,
    render,
)


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
    options: tuple[str, ...] = ()  # SQA, MMMU: the option texts behind letters A-D
    occlusion: float = 0.0  # the share of objects hidden in its world (`shapes.occluders`)

    @property
    def prompt(self) -> str:
        return f"{self.question}\n{self.suffix}"

    @property
    def image(self) -> Image.Image:
        return self.image_of(self.scene_seed)

    def image_of(self, scene_seed: int) -> Image.Image:
        """A scene rendered in this item's world (the shuffle control shows another's)."""
        return render(make_scene(scene_seed), self.occlusion)


def has_hidden_object(item: Item) -> bool:
    """Whether the item's scene has a partly hidden object in its world (`shapes.occluders`)."""
    return any(shapes.occluders(make_scene(item.scene_seed), item.occlusion))


# Benchmark sizes: large enough for a +-2-4 point 95% CI, small enough to score in seconds.
# MME-P: 300 images = 30 per subtask, 2 questions each (600 items); MME-C: 40 per subtask.
BENCHMARK_SIZES = {"GQA": 600, "SQA": 300, "POPE": 600, "MME-P": 300, "MME-C": 160, "MMMU": 300}


def _scene_stream(base: int) -> Iterator[Scene]:
    for seed in range(base, base + BENCH_WINDOW):
        yield make_scene(seed)
    raise ValueError(f"a benchmark split drew more than {BENCH_WINDOW} scenes "
                     "(shapes.BENCH_WINDOW): ask for fewer items")


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
                          subset=extra.get("type", ""), options=extra.get("options", ())))
    return items


def _pope(size: int, base: int) -> list[Item]:
    rng = random.Random(base)
    items: list[Item] = []
    scenes = _scene_stream(base)
    per_split = size // len(POPE_SPLITS)
    for split in POPE_SPLITS:
        for k in range(per_split):
            qa = None
            while qa is None:  # a scene holding every shape has no negative: take the next
                scene = next(scenes)
                qa = pope_item(scene, rng, split, positive=k % 2 == 0)
            q, a, _ = qa
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
            scene = next(scenes)  # a scene-level question's "no" twin is a decoy's "yes"
            decoy = next(scenes) if subtask in SCENE_SUBTASKS else None
            pair = mme_pair(scene, rng, subtask, decoy)
            if pair is None:
                continue
            group = f"{name}-{subtask}-{done:03d}"
            for q, a in zip(pair, ("yes", "no"), strict=True):
                items.append(Item(name, f"{group}-{a}", scene.seed, q, YES_NO, a,
                                  subset=subtask, group=group))
            done += 1
    return items


def wording_accuracy(items: list[Item]) -> float:
    """How much of a yes/no benchmark its wording answers: the accuracy, on the second half
    of `items`, of each question string's majority answer on the first half (a string not
    seen before scores 50%). No image is seen, so questions that carry no hint score ~50%."""
    half = len(items) // 2
    votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for it in items[:half]:
        votes[it.question][it.answer] += 1
    hits = [float(votes[it.question].most_common(1)[0][0] == it.answer) if it.question in votes
            else 0.5 for it in items[half:]]
    return 100 * sum(hits) / len(hits)


# The validation split: the same generators over other scenes, for teacher-training curves
# (`studylib.testbed.teachers`), so that no choice made while training looks at test items.


def benchmark(name: str, size: int | None = None, split: str = "test",
              occlusion: float | None = None) -> list[Item]:
    """The items of one benchmark analogue, fixed for a given size and split, in the world
    of `occlusion` (default `shapes.OCCLUSION`): the questions are the same in every world."""
    items = _items(name, size or BENCHMARK_SIZES[name], split)
    occlusion = shapes.OCCLUSION if occlusion is None else occlusion
    return [dataclasses.replace(it, occlusion=occlusion) for it in items] if occlusion else items


def _items(name: str, size: int, split: str) -> list[Item]:
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLIT_OFFSETS)}")
    # each benchmark (and split) its own scenes
    offset = BENCH_SEED_BASE + 10**6 * BENCHMARKS.index(name) + SPLIT_OFFSETS[split]
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
