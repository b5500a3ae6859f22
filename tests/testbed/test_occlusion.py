"""Occlusion (testbed v3): a share of the objects partly hidden, the scene graph unchanged."""

import numpy as np
import pandas as pd
import pytest

from studylib.chapters import teacher_profile
from studylib.errors import StudyError
from studylib.evaluation import evaluate
from studylib.study import cells
from studylib.testbed import plan, shapes, suite


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_no_occlusion_is_the_world_as_it_was():
    for seed in range(20):
        scene = shapes.make_scene(seed)
        assert shapes.occluders(scene, 0.0) == [None] * len(scene.objects)
        assert np.array_equal(pixels(shapes.render(scene)), pixels(shapes.render(scene, 0.0)))


def test_a_share_hides_about_that_share_and_a_larger_one_a_superset():
    scenes = [shapes.make_scene(seed) for seed in range(2000)]
    small = [h is not None for s in scenes for h in shapes.occluders(s, 0.2)]
    large = [h is not None for s in scenes for h in shapes.occluders(s, 0.4)]
    assert 0.18 < np.mean(small) < 0.22 and 0.38 < np.mean(large) < 0.42
    assert all(b for a, b in zip(small, large, strict=True) if a)


def test_an_occluder_hides_part_of_its_object_and_nothing_else_changes():
    red = np.array(shapes.RGB["red"])
    scene = next(s for seed in range(500)
                 if (s := shapes.Scene(seed, (shapes.Obj("square", "red", "large", 1, 1),),
                                       noise=0.0))
                 and shapes.occluders(s, 0.5)[0])
    plain, hidden = pixels(shapes.render(scene)), pixels(shapes.render(scene, 0.5))
    def is_red(img):
        return (np.abs(img - red * 0.92).max(axis=-1) < 25)
    shown = is_red(hidden).sum() / is_red(plain).sum()
    side, cover = shapes.occluders(scene, 0.5)[0]
    assert 1 - cover - 0.2 < shown < 1 - cover + 0.2  # about the share not covered
    grey = (hidden == shapes.OCCLUDER_RGB).all(axis=-1)
    assert grey.any() and not (plain == shapes.OCCLUDER_RGB).all(axis=-1).any()
    assert np.array_equal(hidden[~grey], plain[~grey])  # only the occluder's pixels changed


def test_a_record_names_its_world_and_loads_it():
    scene = shapes.make_scene(31)
    assert shapes.image_name(31) == "shapesworld/00000031.png"
    assert shapes.image_name(31, 0.2) == "shapesworld/occluded-20/00000031.png"
    for occlusion in (0.0, 0.2, 0.35, 0.07):
        loaded = shapes.load_image(shapes.image_name(31, occlusion))
        assert np.array_equal(pixels(loaded), pixels(shapes.render(scene, occlusion)))
    with pytest.raises(ValueError, match="whole percent"):
        shapes.image_name(31, 0.255)


def test_the_benchmarks_ask_the_same_questions_in_every_world():
    for name in ("POPE", "MME-P"):
        plain = suite.benchmark(name, 60, occlusion=0.0)
        hidden = suite.benchmark(name, 60, occlusion=0.3)
        assert [(i.id, i.scene_seed, i.question, i.answer) for i in plain] == [
            (i.id, i.scene_seed, i.question, i.answer) for i in hidden]
        changed = [not np.array_equal(pixels(a.image), pixels(b.image))
                   for a, b in zip(plain, hidden, strict=True)]
        expected = [any(shapes.occluders(shapes.make_scene(i.scene_seed), 0.3)) for i in plain]
        assert changed == expected and any(changed)


def test_the_benchmarks_world_is_occlusion_and_the_shuffle_keeps_it(monkeypatch):
    monkeypatch.setattr(shapes, "OCCLUSION", 0.3)
    items = suite.benchmark("POPE", 30)
    assert {it.occlusion for it in items} == {0.3}
    shuffled = evaluate.shuffled_images(items)
    seeds = sorted({it.scene_seed for it in items})
    renders = {s: pixels(shapes.render(shapes.make_scene(s), 0.3)) for s in seeds}
    for it, img in zip(items, shuffled, strict=True):  # another scene, in the same world
        same = [s for s, r in renders.items() if np.array_equal(r, pixels(img))]
        assert same and same[0] != it.scene_seed


def test_a_plan_stage_trains_on_the_benchmarks_world_unless_it_says_otherwise(monkeypatch):
    assert plan.parse("mix:1")[0]["occlusion"] == shapes.OCCLUSION
    monkeypatch.setattr(shapes, "OCCLUSION", 0.25)
    default, plain = plan.parse("mix:1,open:1:occlusion=0")
    assert default["occlusion"] == 0.25 and plain["occlusion"] == 0.0
    named = {r["image"].split("/")[1] for r in plan.stage_records(default, 0)}
    assert named == {"occluded-25"}
    assert all(r["image"].count("/") == 1 for r in plan.stage_records(plain, 0))
    for share in ("1", "-0.1", "0.255"):
        with pytest.raises(StudyError, match="occlusion is a share"):
            plan.parse(f"mix:1:occlusion={share}")


def test_the_hidden_table_splits_each_benchmark_by_whether_an_object_is_hidden(monkeypatch):
    monkeypatch.setattr(shapes, "OCCLUSION", 0.3)
    items = suite.benchmark("POPE", 40) + suite.benchmark("GQA", 40)
    hidden = [suite.has_hidden_object(it) for it in items]
    # a model right on every item in full view and wrong on every one with a hidden object
    table = pd.DataFrame({"benchmark": [it.benchmark for it in items],
                          "id": [it.id for it in items], "correct": [not h for h in hidden]})
    out = teacher_profile.hidden_table(table).set_index("benchmark")
    assert list(out.index) == ["POPE", "GQA"]
    assert (out["in full view: correct (%)"] == 100).all()
    assert (out["an object hidden: correct (%)"] == 0).all()
    assert out["an object hidden: items"].sum() == sum(hidden) > 0
    assert (out["in full view: items"] + out["an object hidden: items"]).to_dict() == {
        "POPE": sum(it.benchmark == "POPE" for it in items), "GQA": 40}


def test_the_teachers_items_are_read_from_its_cell(tmp_path):
    cache = cells.CellCache(tmp_path)
    items = {"benchmark": ["POPE"], "id": ["POPE-0000"], "correct": [True]}
    cache.put("teacherkey", {"report": {"items": items}})
    run = pd.DataFrame({"model": ["toy", "toy", "toy", "chance"],
                        "method": ["none", "image-shuffle", "none", "none"],
                        "cell": ["teacherkey", "shufflekey", None, "other"]})
    assert teacher_profile.teacher_items(run, "toy", cache).to_dict("list") == items
    with pytest.raises(ValueError, match="one teacher cell"):
        teacher_profile.teacher_items(run, "absent", cache)
